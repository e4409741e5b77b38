// deepdream's own CUDA kernels, compiled at run time by NVRTC: the element-wise parts of a
// gradient that cuDNN does not do. One thread per element in grid-stride loops; `n` is the
// element count.

// Where element i of a stack of height x width planes lies.
struct Position {
    unsigned long long plane, row, column;
};

// (In 32 bits where the numbers allow: a GPU divides 64-bit integers several times slower.)
__device__ inline Position position(unsigned long long i, unsigned long long height,
                                    unsigned long long width) {
    if (i <= 0xffffffffull && width * height <= 0xffffffffull) {
        const unsigned int j = (unsigned int)i, w = (unsigned int)width;
        return Position{j / (w * (unsigned int)height), (j / w) % (unsigned int)height, j % w};
    }
    return Position{i / (width * height), (i / width) % height, i % width};
}

// Stores a gradient: adds it to what the target holds when `accumulate` (another consumer of
// the value wrote there first), else overwrites it (the target may hold anything, even NaN).
#define STORE(target, value) ((target) = accumulate ? (target) + (value) : (value))

#define FOR_EACH(i, n) \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)blockDim.x * gridDim.x)

// y += a * x
extern "C" __global__ void axpy(float *y, const float *x, float a, unsigned long long n) {
    FOR_EACH(i, n) { y[i] += a * x[i]; }
}

// y = a * x
extern "C" __global__ void scale(float *y, const float *x, float a, unsigned long long n) {
    FOR_EACH(i, n) { y[i] = a * x[i]; }
}

// y = max(x, 0)
extern "C" __global__ void relu(float *y, const float *x, unsigned long long n) {
    FOR_EACH(i, n) { y[i] = fmaxf(x[i], 0.0f); }
}

// Loops over the `plane` elements of each of `channels` planes: the grid's rows take the
// channels (c), its columns the elements within one (i), so that no index is divided.
#define FOR_EACH_IN_PLANES(c, i, plane, channels)                                            \
    for (unsigned long long c = blockIdx.y; c < (channels); c += gridDim.y)                  \
        for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
             i < (plane); i += (unsigned long long)blockDim.x * gridDim.x)

// y = max(x + bias[c], 0) in channel c's plane: a convolution's bias added by the ReLU after
// it (one pass over the values instead of two).
extern "C" __global__ void relu_bias(float *y, const float *x, const float *bias,
                                     unsigned long long plane, unsigned long long channels) {
    FOR_EACH_IN_PLANES(c, i, plane, channels) {
        const unsigned long long at = c * plane + i;
        y[at] = fmaxf(x[at] + bias[c], 0.0f);
    }
}

// y = min(max(x + bias[c], low), high) in channel c's plane, as `relu_bias`.
extern "C" __global__ void clip_bias(float *y, const float *x, const float *bias, float low,
                                     float high, unsigned long long plane,
                                     unsigned long long channels) {
    FOR_EACH_IN_PLANES(c, i, plane, channels) {
        const unsigned long long at = c * plane + i;
        y[at] = fminf(fmaxf(x[at] + bias[c], low), high);
    }
}

// y = min(max(x, low), high)
extern "C" __global__ void clip(float *y, const float *x, float low, float high,
                                unsigned long long n) {
    FOR_EACH(i, n) { y[i] = fminf(fmaxf(x[i], low), high); }
}

// y = a + b
extern "C" __global__ void add(float *y, const float *a, const float *b, unsigned long long n) {
    FOR_EACH(i, n) { y[i] = a[i] + b[i]; }
}

// The ReLU's gradient, dy where its output y is positive, else 0, stored in dx.
extern "C" __global__ void relu_backward(float *dx, const float *dy, const float *y,
                                         unsigned long long accumulate, unsigned long long n) {
    FOR_EACH(i, n) { STORE(dx[i], y[i] > 0.0f ? dy[i] : 0.0f); }
}

// The clip's gradient, dy where its output y lies strictly within (low, high) as on the CPU,
// else 0, stored in dx.
extern "C" __global__ void clip_backward(float *dx, const float *dy, const float *y, float low,
                                         float high, unsigned long long accumulate,
                                         unsigned long long n) {
    FOR_EACH(i, n) { STORE(dx[i], y[i] > low && y[i] < high ? dy[i] : 0.0f); }
}

// y = x * scale[c] + shift[c] in channel c's plane.
extern "C" __global__ void scale_shift(float *y, const float *x, const float *scale,
                                       const float *shift, unsigned long long plane,
                                       unsigned long long channels) {
    FOR_EACH_IN_PLANES(c, i, plane, channels) {
        const unsigned long long at = c * plane + i;
        y[at] = x[at] * scale[c] + shift[c];
    }
}

// dy * scale[c] stored in dx, in channel c's plane.
extern "C" __global__ void scale_backward(float *dx, const float *dy, const float *scale,
                                          unsigned long long accumulate,
                                          unsigned long long plane,
                                          unsigned long long channels) {
    FOR_EACH_IN_PLANES(c, i, plane, channels) {
        const unsigned long long at = c * plane + i;
        STORE(dx[at], dy[at] * scale[c]);
    }
}

// The `channels`x`height`x`width` x placed at (top, left) in a `padded_height`x`padded_width`
// y filled with `value`; n = channels * padded_height * padded_width.
extern "C" __global__ void pad(float *y, const float *x, unsigned long long height,
                               unsigned long long width, unsigned long long top,
                               unsigned long long left, unsigned long long padded_height,
                               unsigned long long padded_width, float value,
                               unsigned long long n) {
    FOR_EACH(i, n) {
        Position at = position(i, padded_height, padded_width);
        bool inside = at.row >= top && at.row < top + height && at.column >= left &&
                      at.column < left + width;
        y[i] = inside ? x[(at.plane * height + at.row - top) * width + at.column - left] : value;
    }
}

// The reverse of `pad` for gradients: the part of the padded dy that x covers, stored in dx;
// n = channels * height * width.
extern "C" __global__ void crop(float *dx, const float *dy, unsigned long long height,
                                unsigned long long width, unsigned long long top,
                                unsigned long long left, unsigned long long padded_height,
                                unsigned long long padded_width, unsigned long long accumulate,
                                unsigned long long n) {
    FOR_EACH(i, n) {
        Position at = position(i, height, width);
        STORE(dx[i],
              dy[(at.plane * padded_height + at.row + top) * padded_width + at.column + left]);
    }
}

// Whether (row, column) lies in the rows [row0, row1) and columns [col0, col1) of a loss's
// window.
__device__ inline bool in_window(unsigned long long row, unsigned long long column,
                                 unsigned long long row0, unsigned long long row1,
                                 unsigned long long col0, unsigned long long col1) {
    return row >= row0 && row < row1 && column >= col0 && column < col1;
}

// The weight of a width-wide mask at `at`'s position; 1 without a mask (0).
__device__ inline float mask_weight(const float *mask, Position at, unsigned long long width) {
    return mask ? mask[at.row * width + at.column] : 1.0f;
}

// A quadratic loss's gradient (see LayerTerms), stored in dy: quadratic[c] * m * a +
// linear[c] at the rows [row0, row1) and columns [col0, col1) of each of the channels x height
// x width planes of a, 0 elsewhere, m the mask's weight at the position (1 without a mask: 0);
// n = channels * height * width.
extern "C" __global__ void quadratic_seed(float *dy, const float *a, const float *quadratic,
                                          const float *linear, const float *mask,
                                          unsigned long long channels,
                                          unsigned long long height, unsigned long long width,
                                          unsigned long long row0, unsigned long long row1,
                                          unsigned long long col0, unsigned long long col1,
                                          unsigned long long accumulate, unsigned long long n) {
    FOR_EACH(i, n) {
        Position at = position(i, height, width);
        unsigned long long c = at.plane % channels;
        bool inside = in_window(at.row, at.column, row0, row1, col0, col1);
        STORE(dy[i], inside ? quadratic[c] * mask_weight(mask, at, width) * a[i] + linear[c] : 0.0f);
    }
}

// Adds the threads' `sum`s of a block (of at most 256 threads, a power of two) to *total,
// once per block.
#define ADD_BLOCK_SUM(total, sum)                                                        \
    do {                                                                                 \
        __shared__ float partial[256];                                                   \
        partial[threadIdx.x] = (sum);                                                    \
        __syncthreads();                                                                 \
        for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {                  \
            if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half]; \
            __syncthreads();                                                             \
        }                                                                                \
        if (threadIdx.x == 0) atomicAdd((total), partial[0]);                            \
    } while (0)

// *total += the quadratic loss's value (see LayerTerms): the sum of 0.5 * quadratic[c] * m *
// a² + linear[c] * a over the rows [row0, row1) and columns [col0, col1) of each of the
// channels x height x width planes of a, m as in quadratic_seed; n = channels * height * width.
extern "C" __global__ void quadratic_value(float *total, const float *a, const float *quadratic,
                                           const float *linear, const float *mask,
                                           unsigned long long channels,
                                           unsigned long long height, unsigned long long width,
                                           unsigned long long row0, unsigned long long row1,
                                           unsigned long long col0, unsigned long long col1,
                                           unsigned long long n) {
    float sum = 0.0f;
    FOR_EACH(i, n) {
        Position at = position(i, height, width);
        unsigned long long c = at.plane % channels;
        if (in_window(at.row, at.column, row0, row1, col0, col1)) {
            sum += (0.5f * quadratic[c] * mask_weight(mask, at, width) * a[i] + linear[c]) * a[i];
        }
    }
    ADD_BLOCK_SUM(total, sum);
}

// A content match (see Match): dy += scale * (a - target), and *total += weight * the sum of
// (a - target)² (none without a total: 0).
extern "C" __global__ void content_seed(float *dy, float *total, const float *a,
                                        const float *target, float scale, float weight,
                                        unsigned long long n) {
    float sum = 0.0f;
    FOR_EACH(i, n) {
        const float difference = a[i] - target[i];
        dy[i] += scale * difference;
        sum += difference * difference;
    }
    if (total) ADD_BLOCK_SUM(total, weight * sum);
}

// A style match's difference (see Match): gram = gram * inverse_count - target, in place, and
// *total += weight * the sum of its squares (none without a total: 0).
extern "C" __global__ void style_difference(float *gram, float *total, const float *target,
                                            float inverse_count, float weight,
                                            unsigned long long n) {
    float sum = 0.0f;
    FOR_EACH(i, n) {
        const float difference = gram[i] * inverse_count - target[i];
        gram[i] = difference;
        sum += difference * difference;
    }
    if (total) ADD_BLOCK_SUM(total, weight * sum);
}

// A guide's pull (see Guide in backend/layer_terms.rs) added to dy, a channels x height x
// width gradient: at each position i = row * width + column inside the rows [row0, row1) and
// columns [col0, col1), weight * features[c][best] in every channel c, best the guide position
// of the largest score there (scores[i * positions + p], the value's features' dot product
// with the guide's at p; the first of equals); features is channels x positions. n = height *
// width.
extern "C" __global__ void guide_seed(float *dy, const float *scores, const float *features,
                                      unsigned long long positions, unsigned long long channels,
                                      unsigned long long width, unsigned long long row0,
                                      unsigned long long row1, unsigned long long col0,
                                      unsigned long long col1, float weight,
                                      unsigned long long n) {
    FOR_EACH(i, n) {
        const unsigned long long row = i / width, column = i % width;
        if (!in_window(row, column, row0, row1, col0, col1)) continue;
        const float *score = scores + i * positions;
        unsigned long long best = 0;
        for (unsigned long long p = 1; p < positions; p++) {
            if (score[p] > score[best]) best = p;
        }
        for (unsigned long long c = 0; c < channels; c++) {
            dy[c * n + i] += weight * features[c * positions + best];
        }
    }
}

// y = x rolled by shift = (rows, cols) in each height x width plane: y[r][c] =
// x[r - rows][c - cols], wrapping around; rows < height, cols < width. The shift is read from
// the GPU's memory, so that a recorded step replays with each step's own.
extern "C" __global__ void roll(float *y, const float *x, const unsigned long long *shift,
                                unsigned long long height, unsigned long long width,
                                unsigned long long n) {
    unsigned long long rows = shift[0], cols = shift[1];
    FOR_EACH(i, n) {
        Position at = position(i, height, width);
        y[i] = x[(at.plane * height + (at.row + height - rows) % height) * width +
                 (at.column + width - cols) % width];
    }
}

// *total += the sum of |x · m|, x a stack of height x width planes and m the weight of its
// pixel: 1 without a mask, else the mask's weight there once the mask is rolled by shift =
// (rows, cols) as x was, mask[(r - rows) mod height][(c - cols) mod width]. Each block sums
// its threads' sums (blocks of at most 256 threads, a power of two) and adds that once.
extern "C" __global__ void abs_sum(float *total, const float *x, const float *mask,
                                   const unsigned long long *shift, unsigned long long height,
                                   unsigned long long width, unsigned long long n) {
    __shared__ float partial[256];
    float sum = 0.0f;
    FOR_EACH(i, n) {
        float weight = 1.0f;
        if (mask) {
            Position at = position(i, height, width);
            weight = mask[((at.row + height - shift[0]) % height) * width +
                          (at.column + width - shift[1]) % width];
        }
        sum += fabsf(x[i] * weight);
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(total, partial[0]);
}

// DeepDream's normalised update of a 3-channel image (NormalisedAscent in backend/ascend.rs):
// with mean = *total / count the gradient's mean absolute value (count = n, or with a change
// mask three times the mask's total weight), the rate is step_size / mean (0 for a zero
// gradient) and channel c's factor rate * unit_c; image[c][r][k] = clamp(image[c][r][k] +
// factor_c * gradient[c][r + rows][k + cols] * mask[r][k], low_c, high_c), the gradient read
// rolled back by shift = (rows, cols) (it was taken on the image rolled so), the mask's
// weight 1 without one; rows < height, cols < width. A mean that is not finite leaves the
// image as it is and sets *bad.
extern "C" __global__ void ascend(float *image, const float *gradient, const float *total,
                                  unsigned int *bad, const unsigned long long *shift,
                                  const float *mask, float count, unsigned long long height,
                                  unsigned long long width, float step_size, float unit0,
                                  float unit1, float unit2, float low0, float high0, float low1,
                                  float high1, float low2, float high2, unsigned long long n) {
    float mean = *total / count;
    if (!isfinite(mean)) {
        if (blockIdx.x == 0 && threadIdx.x == 0) *bad = 1u;
        return;
    }
    float rate = mean > 0.0f ? step_size / mean : 0.0f;
    unsigned long long rows = shift[0], cols = shift[1];
    FOR_EACH(i, n) {
        Position at = position(i, height, width);
        unsigned long long c = at.plane % 3;
        float factor = rate * (c == 0 ? unit0 : c == 1 ? unit1 : unit2);
        float low = c == 0 ? low0 : c == 1 ? low1 : low2;
        float high = c == 0 ? high0 : c == 1 ? high1 : high2;
        float g = gradient[(at.plane * height + (at.row + rows) % height) * width +
                           (at.column + cols) % width];
        if (mask) g *= mask[at.row * width + at.column];
        image[i] = fminf(fmaxf(image[i] + factor * g, low), high);
    }
}

// y = plus + (x - minus) scaled from height x width to out_height x out_width, plane by plane,
// bilinearly with the corners aligned (as burn's interpolate and scipy.ndimage.zoom(order=1)
// do: output row r reads input row r * (height - 1) / (out_height - 1)); minus and plus may be
// none (0). An octave's base is the next larger one resized; its start is its base plus the
// detail (the octave before's dream less that octave's base) resized.
extern "C" __global__ void resize(float *y, const float *x, const float *minus, const float *plus,
                                  unsigned long long height, unsigned long long width,
                                  unsigned long long out_height, unsigned long long out_width,
                                  unsigned long long n) {
    const double row_ratio = (double)(height - 1) / (double)(out_height > 1 ? out_height - 1 : 1);
    const double column_ratio = (double)(width - 1) / (double)(out_width > 1 ? out_width - 1 : 1);
    FOR_EACH(i, n) {
        Position at = position(i, out_height, out_width);
        const double row = at.row * row_ratio, column = at.column * column_ratio;
        const unsigned long long r0 = fmin(floor(row), (double)(height - 1));
        const unsigned long long c0 = fmin(floor(column), (double)(width - 1));
        const unsigned long long r1 = r0 + 1 < height ? r0 + 1 : height - 1;
        const unsigned long long c1 = c0 + 1 < width ? c0 + 1 : width - 1;
        const float wr = (float)fmax(row - (double)r0, 0.0);
        const float wc = (float)fmax(column - (double)c0, 0.0);
        const unsigned long long plane = at.plane * height * width;
        const unsigned long long corners[4] = {plane + r0 * width + c0, plane + r0 * width + c1,
                                               plane + r1 * width + c0, plane + r1 * width + c1};
        float v[4];
        for (int k = 0; k < 4; k++) v[k] = minus ? x[corners[k]] - minus[corners[k]] : x[corners[k]];
        const float value = v[0] * (1.0f - wc) * (1.0f - wr) + v[1] * wc * (1.0f - wr) +
                            v[2] * (1.0f - wc) * wr + v[3] * wc * wr;
        y[i] = plus ? plus[i] + value : value;
    }
}

// The geometry of a depthwise convolution (one kh x kw filter per channel, groups = channels):
// a height x width input, an out_height x out_width output, strides, the padding before the
// first row and column (zeros; the far sides need none to be said), and dilations. Every
// count fits an int (the host checks).
struct Depthwise {
    int height, width, out_height, out_width, kh, kw, sh, sw, top, left, dh, dw;
};

// Σ w[ky][kx] · x[row + ky·dh][column + kx·dw] over the window, x zero outside its plane. K > 0:
// a K x K window known when compiling (unrolled), 0: g.kh x g.kw.
template <int K>
__device__ inline float depthwise_window(const float *x, const float *w, const Depthwise &g,
                                         int row, int column) {
    const int rows = K > 0 ? K : g.kh, columns = K > 0 ? K : g.kw;
    float sum = 0.0f;
#pragma unroll
    for (int ky = 0; ky < rows; ++ky) {
        int r = row + ky * g.dh;
        if (r < 0 || r >= g.height) continue;
#pragma unroll
        for (int kx = 0; kx < columns; ++kx) {
            int c = column + kx * g.dw;
            if (c >= 0 && c < g.width) sum += w[ky * columns + kx] * x[r * g.width + c];
        }
    }
    return sum;
}

// Σ w[ky][kx] · dy[oy][ox] over the outputs whose window reads input (row, column): oy·sh −
// top + ky·dh = row, likewise for columns. K as above.
template <int K>
__device__ inline float depthwise_window_backward(const float *dy, const float *w,
                                                  const Depthwise &g, int row, int column) {
    const int rows = K > 0 ? K : g.kh, columns = K > 0 ? K : g.kw;
    float sum = 0.0f;
#pragma unroll
    for (int ky = 0; ky < rows; ++ky) {
        int r = row + g.top - ky * g.dh;
        if (r < 0 || r % g.sh != 0 || r / g.sh >= g.out_height) continue;
        int oy = r / g.sh;
#pragma unroll
        for (int kx = 0; kx < columns; ++kx) {
            int c = column + g.left - kx * g.dw;
            if (c < 0 || c % g.sw != 0 || c / g.sw >= g.out_width) continue;
            sum += w[ky * columns + kx] * dy[oy * g.out_width + c / g.sw];
        }
    }
    return sum;
}

#define DEPTHWISE_ARGUMENTS                                                                   \
    unsigned long long height, unsigned long long width, unsigned long long out_height,       \
        unsigned long long out_width, unsigned long long kh, unsigned long long kw,           \
        unsigned long long sh, unsigned long long sw, unsigned long long top,                 \
        unsigned long long left, unsigned long long dh, unsigned long long dw,                \
        unsigned long long n
#define DEPTHWISE_GEOMETRY                                                                    \
    Depthwise g{(int)height, (int)width, (int)out_height, (int)out_width, (int)kh, (int)kw, \
                (int)sh,     (int)sw,    (int)top,        (int)left,      (int)dh, (int)dw}

// A depthwise convolution: y[c][oy][ox] = bias[c] (0 without bias) + the window sum of channel
// c's filter over x at (oy·sh − top, ox·sw − left); n = channels · out_height · out_width.
extern "C" __global__ void depthwise(float *y, const float *x, const float *w, const float *bias,
                                     DEPTHWISE_ARGUMENTS) {
    DEPTHWISE_GEOMETRY;
    const int plane = g.out_height * g.out_width, window = g.kh * g.kw;
    FOR_EACH(i, n) {
        const int c = (int)i / plane, at = (int)i % plane;
        const int row = at / g.out_width * g.sh - g.top, column = at % g.out_width * g.sw - g.left;
        const float *xc = x + (long long)c * g.height * g.width, *wc = w + c * window;
        float sum = g.kh == 3 && g.kw == 3   ? depthwise_window<3>(xc, wc, g, row, column)
                    : g.kh == 5 && g.kw == 5 ? depthwise_window<5>(xc, wc, g, row, column)
                                             : depthwise_window<0>(xc, wc, g, row, column);
        y[i] = sum + (bias ? bias[c] : 0.0f);
    }
}

// The depthwise convolution's gradient with respect to its input, stored in dx: at
// [c][row][column], Σ w · dy over the outputs that read it; n = channels · height · width.
extern "C" __global__ void depthwise_backward(float *dx, const float *dy, const float *w,
                                              unsigned long long accumulate,
                                              DEPTHWISE_ARGUMENTS) {
    DEPTHWISE_GEOMETRY;
    const int plane = g.height * g.width, window = g.kh * g.kw;
    FOR_EACH(i, n) {
        const int c = (int)i / plane, at = (int)i % plane;
        const int row = at / g.width, column = at % g.width;
        const float *dyc = dy + (long long)c * g.out_height * g.out_width, *wc = w + c * window;
        const float sum = g.kh == 3 && g.kw == 3
                              ? depthwise_window_backward<3>(dyc, wc, g, row, column)
                          : g.kh == 5 && g.kw == 5
                              ? depthwise_window_backward<5>(dyc, wc, g, row, column)
                              : depthwise_window_backward<0>(dyc, wc, g, row, column);
        STORE(dx[i], sum);
    }
}
