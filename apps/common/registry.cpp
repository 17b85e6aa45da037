// The applications behind `attn train|eval NAME`.
#include "common/app.h"

namespace attn::apps {

App translate_app();
App tag_app();
App gat_app();
App vit_app();
App multimodal_app();
App dqn_app();
App caption_app();
App lm_app();

const std::vector<App>& registry() {
  static const std::vector<App> apps = {translate_app(), tag_app(), gat_app(), vit_app(), multimodal_app(), dqn_app(), caption_app(), lm_app()};
  return apps;
}

const App& find_app(const std::string& name) {
  std::string known;
  for (const App& a : registry()) {
    if (a.name == name) return a;
    known += (known.empty() ? "" : ", ") + a.name;
  }
  throw Error("no application \"" + name + "\"; there are: " + known);
}

}  // namespace attn::apps
