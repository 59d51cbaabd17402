// Placeholder until the kernels land.
int p2phd_kernels_abi_version() { return 1; }
