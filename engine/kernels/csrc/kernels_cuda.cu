__global__ void p2phd_noop(float* x) { if (x) x[threadIdx.x] = 0.f; }
