//! The ViT encoder on an active reconfigurable array (ARAP, survey section 2): a host
//! interface, a global controller issuing 44-bit instructions ([`isa`]), and a 4x4 array of
//! 16-bit fixed-point PEs in four independently configured 2x2 groups, simulated cycle by
//! cycle ([`machine`]), with the operations of [`ops`], the ViT compiler of [`compiler`], the
//! trace and its checker ([`trace`]) and the resource estimate ([`resources`]).

pub mod bound;
pub mod compiler;
pub mod isa;
pub mod machine;
pub mod ops;
pub mod resources;
pub mod trace;
