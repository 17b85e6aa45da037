// Batching: shuffled index batches and the padding collate
// (torch.nn.utils.rnn.pad_sequence).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attn/generator.h"
#include "attn/tensor.h"

namespace attn::data {

// A random permutation of 0 .. n-1 drawn from gen (the default generator when null).
std::vector<int64_t> randperm(int64_t n, Generator* gen = nullptr);

// The batches of an epoch over n examples: consecutive indices of at most
// batch_size each, or of a random permutation with shuffle; drop_last drops
// a short last batch.
std::vector<std::vector<int64_t>> batch_indices(int64_t n, int64_t batch_size, bool shuffle, Generator* gen = nullptr,
                                                bool drop_last = false);

// Pads sequences (L_i, *) to the longest: (L, B, *), or (B, L, *) with
// batch_first. Differentiable.
Tensor pad_sequence(const std::vector<Tensor>& sequences, bool batch_first = false, double padding_value = 0.0);

// IDX files, the format of MNIST and Fashion-MNIST: the magic bytes 0, 0,
// type, ndim; ndim big-endian uint32 sizes; then the data. Plain or
// gzip-compressed (read through zlib, whichever the file is). Unsigned bytes
// (type 0x08), which the MNIST family uses, are read; another type, another
// magic, a file shorter or longer than its sizes say, or sizes beyond
// 2^31 bytes are an attn::Error naming the file and what is wrong.
struct IdxArray {
  Shape shape;
  std::vector<uint8_t> data;  // row-major
};
IdxArray read_idx(const std::string& path);

// Images and their classes, for classification.
struct ImageDataset {
  Tensor images;  // (N, C, H, W) float32 in [0, 1]
  Tensor labels;  // (N) int64
  int64_t size() const { return labels.defined() ? labels.numel() : 0; }
};

// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, arXiv 1708.07747): 60 000
// training and 10 000 test images of 28x28 grey pixels, 10 classes. Read from
// the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each with or without .gz)
// in `dir`; Debian's dataset-fashion-mnist installs them in kFashionMnistDir.
// Images and labels must agree in count and labels be below 10.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
struct FashionMNIST {
  ImageDataset train, test;
  static const std::vector<std::string>& classes();  // "T-shirt/top", "Trouser", ...
};
FashionMNIST load_fashion_mnist(const std::string& dir = kFashionMnistDir);

}  // namespace attn::data
