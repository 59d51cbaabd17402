#include <pybind11/pybind11.h>
int p2phd_kernels_abi_version();
PYBIND11_MODULE(_native, m) { m.def("abi_version", &p2phd_kernels_abi_version); }
