// pybind11 module `_native`: the CPU kernels on NumPy arrays. The Python wrapper
// (p2phd.engine.kernels) validates dtypes, shapes and contiguity before calling in; these
// bindings only unpack pointers and release the GIL around the native work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "kernels_cpu.h"

namespace py = pybind11;
using namespace p2phd::cpu;

namespace {

template <typename T>
const T* in(const py::array& a) {
  return static_cast<const T*>(a.data());
}

template <typename T>
T* out(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

// Per-image lists padded with -1 into an int32 [B, kmax] array.
py::array_t<int32_t> padded(const std::vector<std::vector<int32_t>>& rows, int64_t kmax) {
  py::array_t<int32_t> a({(int64_t)rows.size(), kmax});
  int32_t* p = a.mutable_data();
  for (size_t b = 0; b < rows.size(); ++b) {
    std::fill(p + b * kmax, p + (b + 1) * kmax, -1);
    std::copy(rows[b].begin(), rows[b].end(), p + b * kmax);
  }
  return a;
}

py::tuple compact(const py::array& instances, const py::array& labels, py::array& ids) {
  const int64_t B = instances.shape(0), H = instances.shape(1), W = instances.shape(2);
  const bool wide = instances.itemsize() == 4;
  const void* src = instances.data();
  const uint8_t* lab = in<uint8_t>(labels);
  int32_t* dst = out<int32_t>(ids);
  Compaction c;
  {
    py::gil_scoped_release release;
    c = wide ? compact_instances(static_cast<const int32_t*>(src), lab, B, H, W, dst)
             : compact_instances(static_cast<const uint16_t*>(src), lab, B, H, W, dst);
  }
  if (c.negative_at >= 0) return py::make_tuple(c.negative_at, py::none(), py::none(), py::none());
  py::array_t<int32_t> counts(B);
  int64_t kmax = 0;
  for (int64_t b = 0; b < B; ++b) {
    counts.mutable_data()[b] = (int32_t)c.original[b].size();
    kmax = std::max<int64_t>(kmax, (int64_t)c.original[b].size());
  }
  return py::make_tuple(-1, counts, padded(c.original, kmax), padded(c.classes, kmax));
}

void boundaries(const py::array& ids, py::array& result) {
  const int64_t B = ids.shape(0), H = ids.shape(1), W = ids.shape(2);
  const int32_t* src = in<int32_t>(ids);
  uint8_t* dst = out<uint8_t>(result);
  py::gil_scoped_release release;
  instance_boundaries(src, B, H, W, dst);
}

bool pool(const py::array& features, const py::array& ids, int64_t kmax, py::array& means,
          py::object broadcast) {
  const int64_t B = features.shape(0), C = features.shape(1);
  const int64_t H = features.shape(2), W = features.shape(3);
  float* map = nullptr;
  if (!broadcast.is_none()) {
    py::array a = broadcast.cast<py::array>();
    map = out<float>(a);
  }
  const float* f = in<float>(features);
  const int32_t* i = in<int32_t>(ids);
  float* m = out<float>(means);
  py::gil_scoped_release release;
  return instance_pool(f, i, B, C, H, W, kmax, m, map);
}

py::tuple assemble(const py::array& labels, py::object ids, py::object table, int label_nc,
                   bool one_hot, bool edges, int64_t feat, int64_t kmax, int dtype,
                   py::array& result) {
  const int64_t B = labels.shape(0), H = labels.shape(1), W = labels.shape(2);
  const int32_t* i = ids.is_none() ? nullptr : in<int32_t>(ids.cast<py::array>());
  const float* t = table.is_none() ? nullptr : in<float>(table.cast<py::array>());
  const uint8_t* lab = in<uint8_t>(labels);
  void* dst = result.mutable_data();
  AssembleStatus s;
  {
    py::gil_scoped_release release;
    s = assemble_input(lab, i, t, B, H, W, label_nc, one_hot, edges, feat, kmax, dtype, dst);
  }
  return py::make_tuple(s.label_out_of_range, s.id_out_of_range);
}

void rgb(const py::array& output, int dtype, py::array& result) {
  const int64_t B = output.shape(0), H = output.shape(2), W = output.shape(3);
  const void* src = output.data();
  uint8_t* dst = out<uint8_t>(result);
  py::gil_scoped_release release;
  to_uint8_rgb(src, dtype, B, H, W, dst);
}

bool labels_of(const py::array& x, int label_nc, py::array& labels) {
  const int64_t B = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  const float* src = in<float>(x);
  uint8_t* dst = out<uint8_t>(labels);
  py::gil_scoped_release release;
  return one_hot_labels(src, B, C, H, W, label_nc, dst);
}

void conv(const py::array& x, const py::array& labels, int label_nc, const py::array& taps,
          const py::array& bias, py::array& result) {
  const int64_t B = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  const int K = (int)taps.shape(0);
  const int64_t Co = taps.shape(3), co_out = result.shape(1);
  const float* src = in<float>(x);
  const uint8_t* lab = in<uint8_t>(labels);
  const float* t = in<float>(taps);
  const float* b = in<float>(bias);
  float* dst = out<float>(result);
  py::gil_scoped_release release;
  one_hot_conv(src, lab, B, C, H, W, label_nc, K, Co, t, b, co_out, dst);
}

void conv_levels(const py::array& x, const py::array& labels, int label_nc,
                 const py::array& taps, const py::array& bias, double eps,
                 const py::array& scale, const py::array& shift, double step, py::array& result) {
  const int64_t B = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  const int K = (int)taps.shape(0);
  const int64_t Co = taps.shape(3), co_out = result.shape(3);
  const float* src = in<float>(x);
  const uint8_t* lab = in<uint8_t>(labels);
  const float* t = in<float>(taps);
  const float* b = in<float>(bias);
  const float* g = in<float>(scale);
  const float* s = in<float>(shift);
  uint8_t* dst = out<uint8_t>(result);
  py::gil_scoped_release release;
  one_hot_conv_levels(src, lab, B, C, H, W, label_nc, K, Co, t, b, co_out, eps, g, s, step, dst);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "p2phd CPU kernels (called through p2phd.engine.kernels, which validates inputs)";
  m.def("compact_instances", &compact, "-> (negative_at, counts, original, classes)");
  m.def("instance_boundaries", &boundaries);
  m.def("instance_pool", &pool, "-> False when an id is outside [0, kmax)");
  m.def("assemble_input", &assemble, "-> (label_out_of_range, id_out_of_range)");
  m.def("to_uint8_rgb", &rgb);
  m.def("one_hot_labels", &labels_of, "-> False where the label channels are not one-hot");
  m.def("one_hot_conv", &conv);
  m.def("one_hot_conv_levels", &conv_levels);
}
