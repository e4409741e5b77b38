// Farnebäck's optical flow on the GPU, compiled at run time by NVRTC: the passes of
// farneback.rs, each a kernel over planes of height x width floats (a field of C values per
// pixel is C planes). One thread per output element in grid-stride loops, no shared memory,
// so that the same source built for the host runs them one element after another.
//
// Every kernel takes the one argument struct below; each says which fields it reads.

struct FlowArgs {
    float *out;
    const float *in0;
    const float *in1;
    const float *in2;
    // Filter taps: sets of `taps` values one after another.
    const float *weights;
    unsigned long long taps;
    // The output's size, and the input's where it differs (resizing).
    unsigned long long height, width, in_height, in_width;
    // The factor a resize multiplies its values by.
    float factor;
    // Whether filters read mirrored (1) or repeated (0) values past the edge.
    int mirror;
    // The polynomial expansion's inverse moments: linear, coupling, square, cross.
    float linear, coupling, square, cross;
    // Output elements.
    unsigned long long n;
};

#define FLOW_EACH(i, n) \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)blockDim.x * gridDim.x)

// The index read for position `i` of `n`: the edge repeated, or mirrored about the edge
// pixel (..., 2, 1 | 0, 1, 2, ...), as farneback.rs's `Edge`.
__device__ inline long long flow_edge(long long i, long long n, int mirror) {
    const long long last = n - 1;
    if (mirror) {
        if (i < 0) i = -i;
        else if (i > last) i = 2 * last - i;
    }
    return i < 0 ? 0 : (i > last ? last : i);
}

// out[s] = in0 filtered along columns by weight set s, for each set: n is the sets times the
// plane.
extern "C" __global__ void flow_columns(FlowArgs a) {
    const long long half = (long long)(a.taps / 2);
    const unsigned long long plane = a.height * a.width;
    FLOW_EACH(i, a.n) {
        const unsigned long long set = i / plane, at = i % plane;
        const long long y = (long long)(at / a.width), x = (long long)(at % a.width);
        const float *w = a.weights + set * a.taps;
        float sum = 0.0f;
        for (unsigned long long k = 0; k < a.taps; k++) {
            const long long source = flow_edge(y + (long long)k - half, (long long)a.height, a.mirror);
            sum += w[k] * a.in0[source * (long long)a.width + x];
        }
        a.out[i] = sum;
    }
}

// out = in0 filtered along rows by the first weight set.
extern "C" __global__ void flow_rows(FlowArgs a) {
    const long long half = (long long)(a.taps / 2);
    FLOW_EACH(i, a.n) {
        const long long y = (long long)(i / a.width), x = (long long)(i % a.width);
        const float *row = a.in0 + y * (long long)a.width;
        float sum = 0.0f;
        for (unsigned long long k = 0; k < a.taps; k++) {
            sum += a.weights[k] * row[flow_edge(x + (long long)k - half, (long long)a.width, a.mirror)];
        }
        a.out[i] = sum;
    }
}

// The polynomial expansion's last pass: from the column moments in0 (three planes: 1, y, y²
// weighted), the row moments by the three weight sets (g, x·g, x²·g), combined into the
// five coefficients b_y, b_x, a_yy, a_xx, a_xy (out, five planes). Edges repeated.
extern "C" __global__ void flow_expand(FlowArgs a) {
    const long long half = (long long)(a.taps / 2);
    const unsigned long long plane = a.height * a.width;
    const float *g = a.weights, *xg = a.weights + a.taps, *x2g = a.weights + 2 * a.taps;
    FLOW_EACH(i, plane) {
        const long long y = (long long)(i / a.width), x = (long long)(i % a.width);
        const long long row = y * (long long)a.width;
        const float *m1 = a.in0 + row, *my = a.in0 + plane + row, *my2 = a.in0 + 2 * plane + row;
        float one = 0.0f, mx = 0.0f, mx2 = 0.0f, m_y = 0.0f, mxy = 0.0f, my2s = 0.0f;
        for (unsigned long long k = 0; k < a.taps; k++) {
            const long long source = flow_edge(x + (long long)k - half, (long long)a.width, 0);
            one += g[k] * m1[source];
            mx += xg[k] * m1[source];
            mx2 += x2g[k] * m1[source];
            m_y += g[k] * my[source];
            mxy += xg[k] * my[source];
            my2s += g[k] * my2[source];
        }
        a.out[i] = m_y * a.linear;
        a.out[plane + i] = mx * a.linear;
        a.out[2 * plane + i] = one * a.coupling + my2s * a.square;
        a.out[3 * plane + i] = one * a.coupling + mx2 * a.square;
        a.out[4 * plane + i] = mxy * a.cross;
    }
}

// Bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR) of planes from in_height x
// in_width to height x width (n is the planes times the output's plane), each value times
// `factor`.
extern "C" __global__ void flow_resize(FlowArgs a) {
    const unsigned long long plane = a.height * a.width, in_plane = a.in_height * a.in_width;
    const double y_ratio = (double)a.in_height / (double)a.height;
    const double x_ratio = (double)a.in_width / (double)a.width;
    FLOW_EACH(i, a.n) {
        const unsigned long long p = i / plane, at = i % plane;
        const unsigned long long y = at / a.width, x = at % a.width;
        double sy = ((double)y + 0.5) * y_ratio - 0.5, sx = ((double)x + 0.5) * x_ratio - 0.5;
        sy = sy < 0.0 ? 0.0 : sy;
        sx = sx < 0.0 ? 0.0 : sx;
        const unsigned long long y0 = (unsigned long long)sy, x0 = (unsigned long long)sx;
        const unsigned long long y1 = y0 + 1 < a.in_height ? y0 + 1 : a.in_height - 1;
        const unsigned long long x1 = x0 + 1 < a.in_width ? x0 + 1 : a.in_width - 1;
        const float fy = (float)(sy - (double)y0), fx = (float)(sx - (double)x0);
        const float *in = a.in0 + p * in_plane;
        const float *top = in + y0 * a.in_width, *bottom = in + y1 * a.in_width;
        const float value = top[x0] * (1.0f - fx) * (1.0f - fy) + top[x1] * fx * (1.0f - fy) +
                            bottom[x0] * (1.0f - fx) * fy + bottom[x1] * fx * fy;
        a.out[i] = value * a.factor;
    }
}

// The damping of the equations within five pixels of the edge, from the edge inwards.
__device__ inline float flow_border(unsigned long long i, unsigned long long n) {
    const float weights[5] = {0.14f, 0.14f, 0.4472f, 0.4472f, 0.4472f};
    const float from_start = i < 5 ? weights[i] : 1.0f;
    const float from_end = n - 1 - i < 5 ? weights[n - 1 - i] : 1.0f;
    return from_start * from_end;
}

// The normal equations (out, five planes: G11, G12, G22, h1, h2 in (y, x) order) of the
// displacement mapping the polynomials in0 onto in1 (five planes each), linearised around
// the flow in2 (two planes: x, y).
extern "C" __global__ void flow_update(FlowArgs a) {
    const unsigned long long w = a.width, h = a.height, plane = h * w;
    FLOW_EACH(i, plane) {
        const unsigned long long row = i / w, col = i % w;
        const float dx = a.in2[i], dy = a.in2[plane + i];
        const float x = (float)col + dx, y = (float)row + dy;
        float warped[5] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        float keep = 1.0f;
        // Interpolated only where the whole 2x2 neighbourhood is inside, as OpenCV does.
        if (x >= 0.0f && y >= 0.0f && x < (float)(w - 1) && y < (float)(h - 1)) {
            const unsigned long long x0 = (unsigned long long)x, y0 = (unsigned long long)y;
            const float fx = x - (float)x0, fy = y - (float)y0;
            const unsigned long long at = y0 * w + x0;
            for (int k = 0; k < 5; k++) {
                const float *r1 = a.in1 + k * plane;
                warped[k] = (r1[at] * (1.0f - fx) + r1[at + 1] * fx) * (1.0f - fy) +
                            (r1[at + w] * (1.0f - fx) + r1[at + w + 1] * fx) * fy;
            }
            keep = 0.5f;
        }
        float r[5];
        for (int k = 0; k < 5; k++) r[k] = a.in0[k * plane + i];
        float a_yy = r[2] * keep + warped[2] * 0.5f;
        float a_xx = r[3] * keep + warped[3] * 0.5f;
        float a_xy = (r[4] * keep + warped[4] * 0.5f) * 0.5f;
        float b_y = (r[0] - warped[0]) * 0.5f + a_yy * dy + a_xy * dx;
        float b_x = (r[1] - warped[1]) * 0.5f + a_xy * dy + a_xx * dx;
        const float border = flow_border(row, h) * flow_border(col, w);
        a_yy *= border;
        a_xx *= border;
        a_xy *= border;
        b_y *= border;
        b_x *= border;
        a.out[i] = a_yy * a_yy + a_xy * a_xy;
        a.out[plane + i] = (a_yy + a_xx) * a_xy;
        a.out[2 * plane + i] = a_xx * a_xx + a_xy * a_xy;
        a.out[3 * plane + i] = a_yy * b_y + a_xy * b_x;
        a.out[4 * plane + i] = a_xy * b_y + a_xx * b_x;
    }
}

// The sums of in0's five planes over a column of `taps` rows around each pixel, edges
// repeated (the first half of a box mean).
extern "C" __global__ void flow_box_columns(FlowArgs a) {
    const long long half = (long long)(a.taps / 2);
    const unsigned long long plane = a.height * a.width;
    FLOW_EACH(i, a.n) {
        const unsigned long long p = i / plane, at = i % plane;
        const long long y = (long long)(at / a.width), x = (long long)(at % a.width);
        const float *in = a.in0 + p * plane;
        double sum = 0.0;
        for (long long k = -half; k <= half; k++) {
            sum += (double)in[flow_edge(y + k, (long long)a.height, 0) * (long long)a.width + x];
        }
        a.out[i] = (float)sum;
    }
}

// The flow (out, two planes: x, y) solving the normal equations averaged over a `taps` box:
// the column sums in0 (five planes) summed along the row, edges repeated.
extern "C" __global__ void flow_solve(FlowArgs a) {
    const long long half = (long long)(a.taps / 2);
    const unsigned long long plane = a.height * a.width;
    const double area = (double)(a.taps * a.taps);
    FLOW_EACH(i, plane) {
        const long long y = (long long)(i / a.width), x = (long long)(i % a.width);
        float g[5];
        for (int p = 0; p < 5; p++) {
            const float *row = a.in0 + p * plane + y * (long long)a.width;
            double sum = 0.0;
            for (long long k = -half; k <= half; k++) {
                sum += (double)row[flow_edge(x + k, (long long)a.width, 0)];
            }
            g[p] = (float)(sum / area);
        }
        const float det = g[0] * g[2] - g[1] * g[1] + 1e-3f;
        a.out[i] = (g[0] * g[4] - g[1] * g[3]) / det;
        a.out[plane + i] = (g[2] * g[3] - g[1] * g[4]) / det;
    }
}
