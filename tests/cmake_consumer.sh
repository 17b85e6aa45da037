echo consumer placeholder
