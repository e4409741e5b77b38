//! cuDNN through its C interface (cudarc's raw bindings): a handle on deepdream's stream and
//! descriptors that free themselves. Everything is `float`, NCHW, batch 1.

use cudarc::cudnn::sys;
use cudarc::driver::CudaStream;

use crate::backend::graph::Shape;
use crate::error::{Error, Result};

/// A cuDNN failure as deepdream's error.
pub fn failed(what: &str, status: sys::cudnnStatus_t) -> Error {
    Error::Device(format!("cuDNN could not {what}: {status:?}"))
}

/// Checks a cuDNN call's status.
pub fn check(what: &str, status: sys::cudnnStatus_t) -> Result<()> {
    if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(failed(what, status))
    }
}

/// A cuDNN handle bound to a stream.
pub struct Handle(pub sys::cudnnHandle_t);

impl Handle {
    /// A handle whose work goes to `stream`.
    pub fn new(stream: &CudaStream) -> Result<Handle> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: plain handle creation; the stream outlives the handle (both belong to Gpu).
        unsafe {
            check("start", sys::cudnnCreate(&mut handle))?;
            let handle = Handle(handle);
            check(
                "use the stream",
                sys::cudnnSetStream(handle.0, stream.cu_stream() as _),
            )?;
            Ok(handle)
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate, destroyed once.
        unsafe { sys::cudnnDestroy(self.0) };
    }
}

/// A `[1, C, H, W]` float tensor descriptor.
pub struct TensorDesc(pub sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    /// The descriptor of `shape`.
    pub fn new(shape: Shape) -> Result<TensorDesc> {
        TensorDesc::nchw(1, shape.channels, shape.height, shape.width)
    }

    /// The descriptor of an `[n, c, h, w]` tensor.
    pub fn nchw(n: usize, c: usize, h: usize, w: usize) -> Result<TensorDesc> {
        let mut desc = std::ptr::null_mut();
        // SAFETY: creation and setting of a fresh descriptor.
        unsafe {
            check(
                "create a tensor descriptor",
                sys::cudnnCreateTensorDescriptor(&mut desc),
            )?;
            let desc = TensorDesc(desc);
            check(
                "describe a tensor",
                sys::cudnnSetTensor4dDescriptor(
                    desc.0,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                    n as i32,
                    c as i32,
                    h as i32,
                    w as i32,
                ),
            )?;
            Ok(desc)
        }
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe { sys::cudnnDestroyTensorDescriptor(self.0) };
    }
}

/// A convolution's filter and convolution descriptors.
pub struct ConvDesc {
    /// The filter, `[out, in / groups, kh, kw]`.
    pub filter: sys::cudnnFilterDescriptor_t,
    /// The convolution.
    pub conv: sys::cudnnConvolutionDescriptor_t,
}

/// A convolution's geometry.
#[derive(Debug)]
pub struct ConvGeometry {
    /// The filter's shape.
    pub shape: [usize; 4],
    /// Padding on both sides (rows, columns).
    pub padding: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// Whether TF32 tensor cores may be used.
    pub tf32: bool,
}

impl ConvDesc {
    /// The descriptors of `geometry`.
    pub fn new(geometry: &ConvGeometry) -> Result<ConvDesc> {
        let [k, c, h, w] = geometry.shape.map(|d| d as i32);
        let mut filter = std::ptr::null_mut();
        let mut conv = std::ptr::null_mut();
        // SAFETY: creation and setting of fresh descriptors.
        unsafe {
            check(
                "create a filter descriptor",
                sys::cudnnCreateFilterDescriptor(&mut filter),
            )?;
            let created = sys::cudnnCreateConvolutionDescriptor(&mut conv);
            let desc = ConvDesc { filter, conv };
            check("create a convolution descriptor", created)?;
            check(
                "describe a filter",
                sys::cudnnSetFilter4dDescriptor(
                    desc.filter,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                    k,
                    c,
                    h,
                    w,
                ),
            )?;
            check(
                "describe a convolution",
                sys::cudnnSetConvolution2dDescriptor(
                    desc.conv,
                    geometry.padding[0] as i32,
                    geometry.padding[1] as i32,
                    geometry.stride[0] as i32,
                    geometry.stride[1] as i32,
                    geometry.dilation[0] as i32,
                    geometry.dilation[1] as i32,
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                ),
            )?;
            let math = if geometry.tf32 {
                sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH
            } else {
                sys::cudnnMathType_t::CUDNN_FMA_MATH
            };
            check(
                "set the math type",
                sys::cudnnSetConvolutionMathType(desc.conv, math),
            )?;
            check(
                "set the groups",
                sys::cudnnSetConvolutionGroupCount(desc.conv, geometry.groups as i32),
            )?;
            Ok(desc)
        }
    }
}

impl ConvDesc {
    /// The `[n, c, h, w]` output cuDNN computes from an input described by `x`.
    pub fn output(&self, x: &TensorDesc) -> Result<[usize; 4]> {
        let mut dims = [0i32; 4];
        let [n, c, h, w] = &mut dims;
        // SAFETY: the descriptors are alive.
        check("size a convolution's output", unsafe {
            sys::cudnnGetConvolution2dForwardOutputDim(self.conv, x.0, self.filter, n, c, h, w)
        })?;
        Ok(dims.map(|d| d as usize))
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created once (null if creation failed, which cuDNN accepts), destroyed once.
        unsafe {
            sys::cudnnDestroyFilterDescriptor(self.filter);
            sys::cudnnDestroyConvolutionDescriptor(self.conv);
        }
    }
}

/// A pooling descriptor.
pub struct PoolDesc(pub sys::cudnnPoolingDescriptor_t);

impl PoolDesc {
    /// Max pooling, or average pooling that counts the padding or not.
    pub fn new(
        max: bool,
        count_pad: bool,
        kernel: [usize; 2],
        padding: [usize; 2],
        stride: [usize; 2],
    ) -> Result<PoolDesc> {
        let mode = match (max, count_pad) {
            (true, _) => sys::cudnnPoolingMode_t::CUDNN_POOLING_MAX_DETERMINISTIC,
            (false, true) => sys::cudnnPoolingMode_t::CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
            (false, false) => sys::cudnnPoolingMode_t::CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING,
        };
        let mut desc = std::ptr::null_mut();
        // SAFETY: creation and setting of a fresh descriptor.
        unsafe {
            check(
                "create a pooling descriptor",
                sys::cudnnCreatePoolingDescriptor(&mut desc),
            )?;
            let desc = PoolDesc(desc);
            check(
                "describe a pooling",
                sys::cudnnSetPooling2dDescriptor(
                    desc.0,
                    mode,
                    sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                    kernel[0] as i32,
                    kernel[1] as i32,
                    padding[0] as i32,
                    padding[1] as i32,
                    stride[0] as i32,
                    stride[1] as i32,
                ),
            )?;
            Ok(desc)
        }
    }
}

impl PoolDesc {
    /// The `[n, c, h, w]` output cuDNN computes from an input described by `x`.
    pub fn output(&self, x: &TensorDesc) -> Result<[usize; 4]> {
        let mut dims = [0i32; 4];
        let [n, c, h, w] = &mut dims;
        // SAFETY: the descriptors are alive.
        check("size a pooling's output", unsafe {
            sys::cudnnGetPooling2dForwardOutputDim(self.0, x.0, n, c, h, w)
        })?;
        Ok(dims.map(|d| d as usize))
    }
}

impl Drop for PoolDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe { sys::cudnnDestroyPoolingDescriptor(self.0) };
    }
}

/// A cross-channel LRN descriptor.
pub struct LrnDesc(pub sys::cudnnLRNDescriptor_t);

impl LrnDesc {
    /// `y = x / (bias + alpha / size · Σ x²)^beta` over `size` channels.
    pub fn new(size: usize, alpha: f32, beta: f32, bias: f32) -> Result<LrnDesc> {
        let mut desc = std::ptr::null_mut();
        // SAFETY: creation and setting of a fresh descriptor.
        unsafe {
            check(
                "create an LRN descriptor",
                sys::cudnnCreateLRNDescriptor(&mut desc),
            )?;
            let desc = LrnDesc(desc);
            check(
                "describe an LRN",
                sys::cudnnSetLRNDescriptor(
                    desc.0,
                    size as u32,
                    alpha as f64,
                    beta as f64,
                    bias as f64,
                ),
            )?;
            Ok(desc)
        }
    }
}

impl Drop for LrnDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe { sys::cudnnDestroyLRNDescriptor(self.0) };
    }
}
