//! Intel AMX for the int8 product: tile registers of 16 rows x 64 bytes and `tdpbssd`, which
//! adds a 16 x 64 by 64 x 16 signed-byte product into 16 x 16 `i32`s.
//!
//! Rust has no stable AMX intrinsics, so the few instructions are written with `asm!`. Linux
//! hands the tile state to a process only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), made
//! once; if the CPU lacks AMX or the kernel refuses, [`usable`] is false and the VNNI kernel
//! runs instead.

use std::arch::asm;

use super::micro::QTile;

/// `arch_prctl` request for permission to use an extended state component.
const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
/// The AMX tile data state component.
const XFEATURE_XTILEDATA: libc::c_ulong = 18;

/// Whether this CPU has AMX-TILE and AMX-INT8 and this process may use them.
pub(super) fn usable() -> bool {
    use std::sync::OnceLock;
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        // Leaf 7 exists on every CPU with AVX-512, which the caller checked first.
        let leaf = std::arch::x86_64::__cpuid_count(7, 0);
        let tile = leaf.edx & (1 << 24) != 0;
        let int8 = leaf.edx & (1 << 25) != 0;
        if !(tile && int8) || std::env::var_os("EDGERUN_NO_AMX").is_some() {
            return false;
        }
        // SAFETY: a syscall with integer arguments; it changes only which register state the
        // kernel saves for this process.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    })
}

/// The tile configuration: palette 1, tiles 0-7 all 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn uniform() -> Self {
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        for tile in 0..8 {
            bytes[16 + 2 * tile..18 + 2 * tile].copy_from_slice(&64u16.to_le_bytes());
            bytes[48 + tile] = 16;
        }
        Self(bytes)
    }
}

/// Computes 32 rows x 64 columns of exact sums on tiles and hands each row to `finish`.
/// Tiles 0-3 hold the sums (rows 0-15 and 16-31, panels `2h` and `2h + 1`), 4-5 the rows'
/// codes, 6-7 the panels' codes, 64 steps at a time.
///
/// # Safety
/// `usable()` must be true; `t` must address 32 rows of `steps` codes (`steps` a positive
/// multiple of 64) and one whole group of int8 codes; `finish` is called with each row's 64
/// sums and must be safe to call for the tile's rows.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn int8_32x64(t: &QTile, finish: unsafe fn(&QTile, usize, &[i32; 64])) {
    let config = TileConfig::uniform();
    let mut sums = [[0i32; 64]; 32];
    let a_rs = t.a_rs;
    let b_rs: usize = 256;
    // SAFETY: the configuration is valid for palette 1; every tile load reads 16 rows of 64
    // bytes that the caller's contract covers (rows i0..i0 + 16 of the codes at step s, and
    // quads 16s..16s + 16 of a panel); the stores write 16 rows of 64 bytes of `sums`.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
        for half in 0..2 {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for s in 0..t.steps / 64 {
                let a0 = t.a.add(s * 64);
                let a1 = t.a.add(16 * a_rs + s * 64);
                let b0 = t.b.add(s * 16 * b_rs + 2 * half * 64);
                let b1 = b0.add(64);
                asm!(
                    "tileloadd tmm4, [{a0} + {ars} * 1]",
                    "tileloadd tmm5, [{a1} + {ars} * 1]",
                    "tileloadd tmm6, [{b0} + {brs} * 1]",
                    "tileloadd tmm7, [{b1} + {brs} * 1]",
                    "tdpbssd tmm0, tmm4, tmm6",
                    "tdpbssd tmm1, tmm4, tmm7",
                    "tdpbssd tmm2, tmm5, tmm6",
                    "tdpbssd tmm3, tmm5, tmm7",
                    a0 = in(reg) a0,
                    a1 = in(reg) a1,
                    b0 = in(reg) b0,
                    b1 = in(reg) b1,
                    ars = in(reg) a_rs,
                    brs = in(reg) b_rs,
                    options(nostack, readonly),
                );
            }
            let row_bytes: usize = 64 * 4;
            let top = sums.as_mut_ptr().cast::<u8>().add(half * 128);
            let bottom = top.add(16 * row_bytes);
            asm!(
                "tilestored [{t0} + {rs} * 1], tmm0",
                "tilestored [{t1} + {rs} * 1], tmm1",
                "tilestored [{b0} + {rs} * 1], tmm2",
                "tilestored [{b1} + {rs} * 1], tmm3",
                t0 = in(reg) top,
                t1 = in(reg) top.add(64),
                b0 = in(reg) bottom,
                b1 = in(reg) bottom.add(64),
                rs = in(reg) row_bytes,
                options(nostack),
            );
        }
        asm!("tilerelease", options(nostack, nomem));
        for (i, row) in sums.iter().enumerate() {
            finish(t, i, row);
        }
    }
}
