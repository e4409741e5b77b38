// deepdream's own CUDA kernels, compiled at run time by NVRTC: the element-wise parts of a
// gradient that cuDNN does not do. One thread per element in grid-stride loops; `n` is the
// element count.

#define FOR_EACH(i, n) \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)blockDim.x * gridDim.x)

// y = value
extern "C" __global__ void fill(float *y, float value, unsigned long long n) {
    FOR_EACH(i, n) { y[i] = value; }
}

// y += a * x
extern "C" __global__ void axpy(float *y, const float *x, float a, unsigned long long n) {
    FOR_EACH(i, n) { y[i] += a * x[i]; }
}

// y = max(x, 0)
extern "C" __global__ void relu(float *y, const float *x, unsigned long long n) {
    FOR_EACH(i, n) { y[i] = fmaxf(x[i], 0.0f); }
}

// The gradient through a ReLU, in place: it passes where the output `y` is positive.
extern "C" __global__ void relu_backward(float *g, const float *y, unsigned long long n) {
    FOR_EACH(i, n) {
        if (!(y[i] > 0.0f)) g[i] = 0.0f;
    }
}

// y = min(max(x, low), high)
extern "C" __global__ void clip(float *y, const float *x, float low, float high,
                                unsigned long long n) {
    FOR_EACH(i, n) { y[i] = fminf(fmaxf(x[i], low), high); }
}

// The gradient through a clip, in place: it passes where the input `x` lies within the range.
extern "C" __global__ void clip_backward(float *g, const float *x, float low, float high,
                                         unsigned long long n) {
    FOR_EACH(i, n) {
        if (!(x[i] >= low && x[i] <= high)) g[i] = 0.0f;
    }
}

// y = a + b, where `b` repeats every `period` elements (b's length) or per channel block of
// `inner` elements (b[(i / inner) % period]) when `inner` > 1.
extern "C" __global__ void add(float *y, const float *a, const float *b, unsigned long long period,
                               unsigned long long inner, unsigned long long n) {
    FOR_EACH(i, n) { y[i] = a[i] + b[(i / inner) % period]; }
}

// Sums of x² and of |x| into sums[0] and sums[1] (which start at zero).
extern "C" __global__ void sums(const float *x, float *sums, unsigned long long n) {
    float squares = 0.0f, absolute = 0.0f;
    FOR_EACH(i, n) {
        squares += x[i] * x[i];
        absolute += fabsf(x[i]);
    }
    for (int offset = 16; offset > 0; offset /= 2) {
        squares += __shfl_down_sync(0xffffffff, squares, offset);
        absolute += __shfl_down_sync(0xffffffff, absolute, offset);
    }
    if ((threadIdx.x & 31) == 0) {
        atomicAdd(&sums[0], squares);
        atomicAdd(&sums[1], absolute);
    }
}
