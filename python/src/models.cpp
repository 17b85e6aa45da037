// attn.models (torchvision's ViT and Swin, Hugging Face's GPT-2 and BERT),
// GPT-2's tokenizer (attn.text) and the optimizers (attn.optim).
#include "attn/models/bert.h"
#include "attn/models/gpt2.h"
#include "attn/models/swin_transformer.h"
#include "attn/models/vision_transformer.h"
#include "attn/text.h"
#include "common.h"

namespace attn::python {
namespace {

template <class Fn>
auto nogil(Fn&& f) {
  py::gil_scoped_release release;
  return f();
}

// An image classifier's forward: (B, 3, H, W) -> (B, num_classes).
template <class M>
Tensor classify(M& model, py::object images) {
  Tensor t = as_tensor(images, "images");
  return nogil([&] { return model.forward(t); });
}

py::object opt(const Tensor& t) { return t.defined() ? py::cast(t) : py::none(); }

py::dict bert_outputs(const models::BertOutputs& o) {
  py::dict d;
  d["last_hidden_state"] = o.last_hidden_state;
  d["pooler_output"] = opt(o.pooler_output);
  d["logits"] = opt(o.logits);
  return d;
}

std::vector<Tensor> params_of(py::handle params) {
  std::vector<Tensor> out;
  for (py::handle p : params) out.push_back(p.cast<Tensor>());
  return out;
}

}  // namespace

void bind_models(py::module_& top) {
  py::module_ m = top.def_submodule("models", "torchvision's and Hugging Face's attention models");

  py::class_<models::VisionTransformer, nn::Module>(m, "VisionTransformer")
      .def(py::init([](int64_t image_size, int64_t patch_size, int64_t num_layers, int64_t num_heads,
                       int64_t hidden_dim, int64_t mlp_dim, double dropout, double attention_dropout,
                       int64_t num_classes, std::optional<int64_t> representation_size) {
             return std::make_unique<models::VisionTransformer>(
                 models::VisionTransformerOptions(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim)
                     .dropout(dropout)
                     .attention_dropout(attention_dropout)
                     .num_classes(num_classes)
                     .representation_size(representation_size));
           }),
           py::arg("image_size"), py::arg("patch_size"), py::arg("num_layers"), py::arg("num_heads"),
           py::arg("hidden_dim"), py::arg("mlp_dim"), py::arg("dropout") = 0.0, py::arg("attention_dropout") = 0.0,
           py::arg("num_classes") = 1000, py::arg("representation_size") = py::none())
      .def("forward", &classify<models::VisionTransformer>, py::arg("images"));
  m.def("vision_transformer", [](const std::string& name, int64_t num_classes) {
          return std::make_unique<models::VisionTransformer>(
              models::VisionTransformerOptions::preset(name).num_classes(num_classes));
        }, py::arg("name"), py::arg("num_classes") = 1000,
        "torchvision's preset by name: vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14");

  py::class_<models::SwinTransformer, nn::Module>(m, "SwinTransformer")
      .def("forward", &classify<models::SwinTransformer>, py::arg("images"));
  m.def("swin_transformer", [](const std::string& name, int64_t num_classes) {
          return std::make_unique<models::SwinTransformer>(
              models::SwinTransformerOptions::preset(name).num_classes(num_classes));
        }, py::arg("name"), py::arg("num_classes") = 1000,
        "torchvision's preset by name: swin_t, swin_s, swin_b, swin_v2_t, swin_v2_s, swin_v2_b");

  py::class_<models::GPT2LMHeadModel, nn::Module>(m, "GPT2LMHeadModel")
      .def_static("from_pretrained", &models::GPT2LMHeadModel::from_pretrained, py::arg("directory"),
                  "A Hugging Face directory: config.json and model.safetensors or pytorch_model.bin")
      .def("forward", [](const models::GPT2LMHeadModel& mm, py::object ids, py::object mask, py::object pos) {
             Tensor i = as_tensor(ids, "input_ids"), a = as_optional_tensor(mask, "attention_mask"),
                    p = as_optional_tensor(pos, "position_ids");
             return nogil([&] { return mm.forward(i, a, p); });
           }, py::arg("input_ids"), py::arg("attention_mask") = py::none(), py::arg("position_ids") = py::none(),
           "Logits (B, T, vocab_size)")
      .def("save_pretrained", &models::GPT2LMHeadModel::save_pretrained, py::arg("directory"));

  py::class_<models::BertForMaskedLM, nn::Module>(m, "BertForMaskedLM")
      .def_static("from_pretrained", &models::BertForMaskedLM::from_pretrained, py::arg("directory"))
      .def("forward", [](const models::BertForMaskedLM& mm, py::object ids, py::object mask, py::object types) {
             Tensor i = as_tensor(ids, "input_ids"), a = as_optional_tensor(mask, "attention_mask"),
                    t = as_optional_tensor(types, "token_type_ids");
             return bert_outputs(nogil([&] { return mm.forward(i, a, t); }));
           }, py::arg("input_ids"), py::arg("attention_mask") = py::none(), py::arg("token_type_ids") = py::none(),
           "A dict: last_hidden_state, pooler_output (or None), logits (or None)");

  py::module_ text = top.def_submodule("text", "GPT-2's byte-level BPE tokenizer");
  py::class_<text::ByteLevelBPE>(text, "ByteLevelBPE")
      .def_static("from_directory", &text::ByteLevelBPE::from_directory, py::arg("directory"))
      .def_static("from_files", &text::ByteLevelBPE::from_files, py::arg("vocab"), py::arg("merges"))
      .def("encode", [](const text::ByteLevelBPE& t, const std::string& s, bool allow_special) {
             return t.encode(s, allow_special);
           }, py::arg("text"), py::arg("allow_special") = false)
      .def("decode", [](const text::ByteLevelBPE& t, const std::vector<int64_t>& ids) {
             const std::string s = t.decode(ids);
             return py::bytes(s).attr("decode")("utf-8", "replace");
           }, py::arg("ids"))
      .def_property_readonly("vocab_size", &text::ByteLevelBPE::vocab_size);

  py::module_ optim = top.def_submodule("optim", "attn's optimizers (PyTorch's update rules)");
  py::class_<optim::Optimizer>(optim, "Optimizer")
      .def("step", [](optim::Optimizer& o) { nogil([&] { o.step(); return 0; }); })
      .def("zero_grad", &optim::Optimizer::zero_grad, py::arg("set_to_none") = true)
      .def_property("lr", &optim::Optimizer::lr, &optim::Optimizer::set_lr);
  py::class_<optim::SGD, optim::Optimizer>(optim, "SGD")
      .def(py::init([](py::object params, double lr, double momentum, double dampening, double weight_decay,
                       bool nesterov) {
             return std::make_unique<optim::SGD>(params_of(params), optim::SGDOptions(lr)
                                                                       .momentum(momentum)
                                                                       .dampening(dampening)
                                                                       .weight_decay(weight_decay)
                                                                       .nesterov(nesterov));
           }), py::arg("params"), py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
           py::arg("weight_decay") = 0.0, py::arg("nesterov") = false);
  auto adam_options = [](double lr, std::pair<double, double> betas, double eps, double wd, bool amsgrad) {
    return optim::AdamOptions(lr).beta1(betas.first).beta2(betas.second).eps(eps).weight_decay(wd).amsgrad(amsgrad);
  };
  py::class_<optim::Adam, optim::Optimizer>(optim, "Adam")
      .def(py::init([adam_options](py::object params, double lr, std::pair<double, double> betas, double eps,
                                   double wd, bool amsgrad) {
             return std::make_unique<optim::Adam>(params_of(params), adam_options(lr, betas, eps, wd, amsgrad));
           }), py::arg("params"), py::arg("lr") = 1e-3, py::arg("betas") = std::make_pair(0.9, 0.999),
           py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("amsgrad") = false);
  py::class_<optim::AdamW, optim::Adam>(optim, "AdamW")
      .def(py::init([adam_options](py::object params, double lr, std::pair<double, double> betas, double eps,
                                   double wd, bool amsgrad) {
             return std::make_unique<optim::AdamW>(params_of(params), adam_options(lr, betas, eps, wd, amsgrad));
           }), py::arg("params"), py::arg("lr") = 1e-3, py::arg("betas") = std::make_pair(0.9, 0.999),
           py::arg("eps") = 1e-8, py::arg("weight_decay") = 1e-2, py::arg("amsgrad") = false);
}

}  // namespace attn::python
