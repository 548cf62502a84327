//! Building, parsing, measuring and signing whole images, and every corruption refused with its
//! code.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test helpers; offsets of small test images

use cloister_common::ErrorCode;
use cloister_eif::cpio::Entry;
use cloister_eif::format::{HEADER_LEN, MAX_SECTIONS, SECTION_HEADER_LEN};
use cloister_eif::{
    EifError, Image, Pcr, Ramdisk, SectionType, SigningKey, describe, measure, parse,
};
use proptest::prelude::*;

fn sha384(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA384);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

fn init_ramdisk() -> Ramdisk {
    Ramdisk::from_entries(&[
        Entry::file("init", 0o755, b"#!init".to_vec()),
        Entry::char_device("dev/console", 0o600, 5, 1),
        Entry::file("lib/modules/vsock.ko", 0o644, b"ko".to_vec()),
    ])
    .unwrap()
}

fn image(ramdisks: usize) -> Image {
    let mut rds = vec![init_ramdisk()];
    for i in 1..ramdisks {
        rds.push(Ramdisk::from_bytes(format!("app ramdisk {i}").into_bytes()));
    }
    let mut img = Image::new(b"bzImage kernel".to_vec(), "console=ttyS0 quiet", rds);
    img.metadata = Some(br#"{"ImageName":"test"}"#.to_vec());
    img
}

fn code(e: EifError) -> String {
    e.code().into_owned()
}

fn err_code(bytes: &[u8]) -> String {
    code(parse(bytes).unwrap_err())
}

fn set_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn offset_slot(i: usize) -> usize {
    28 + 8 * i
}

fn size_slot(i: usize) -> usize {
    28 + 8 * MAX_SECTIONS + 8 * i
}

fn test_key(cn: &str) -> SigningKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    SigningKey::from_pem(key.serialize_pem().as_bytes(), cert.pem().as_bytes()).unwrap()
}

#[test]
fn round_trip_and_layout() {
    let img = image(2);
    let (bytes, pcrs) = img.build().unwrap();
    let eif = parse(&bytes).unwrap();
    let kinds: Vec<_> = eif.sections.iter().map(|s| s.kind).collect();
    use SectionType::*;
    assert_eq!(kinds, [Kernel, Cmdline, Metadata, Ramdisk, Ramdisk]);
    assert_eq!(eif.first(Kernel).unwrap(), img.kernel.as_slice());
    assert_eq!(eif.first(Cmdline).unwrap(), img.cmdline.as_bytes());
    let rds: Vec<_> = eif.sections_of(Ramdisk).map(|s| s.data).collect();
    assert_eq!(
        rds,
        [img.ramdisks[0].as_bytes(), img.ramdisks[1].as_bytes()]
    );
    assert_eq!(eif.header.default_mem, 1 << 30);
    assert_eq!(eif.header.default_cpus, 2);
    assert_eq!(eif.sections[0].offset, HEADER_LEN as u64);
    let d = describe(&bytes).unwrap();
    assert_eq!(d.pcrs, pcrs);
    assert_eq!(d.signer, None);
    assert_eq!(d.sections.len(), 5);
    assert_eq!(
        d.sections[2].size,
        img.metadata.as_ref().unwrap().len() as u64
    );
    assert_eq!(measure(&bytes).unwrap(), pcrs);
}

#[test]
fn builds_are_reproducible() {
    let (a, pa) = image(2).build().unwrap();
    let (b, pb) = image(2).build().unwrap();
    assert_eq!(a, b);
    assert_eq!(pa, pb);
}

#[test]
fn pcrs_split_for_one_and_two_ramdisks() {
    let extend = |d: Vec<u8>| Pcr::extend_from_zero(&d);
    let k = b"bzImage kernel".as_slice();
    let c = b"console=ttyS0 quiet".as_slice();
    let r1 = init_ramdisk();
    let r1 = r1.as_bytes();

    let (_, one) = image(1).build().unwrap();
    assert_eq!(one.pcr0, extend(sha384(&[k, c, r1])));
    assert_eq!(one.pcr1, extend(sha384(&[k, c, r1])));
    assert_eq!(one.pcr2, extend(sha384(&[])));
    assert_eq!(one.pcr8, None);

    let (_, two) = image(2).build().unwrap();
    let r2 = b"app ramdisk 1".as_slice();
    assert_eq!(two.pcr0, extend(sha384(&[k, c, r1, r2])));
    assert_eq!(two.pcr1, one.pcr1);
    assert_eq!(two.pcr2, extend(sha384(&[r2])));

    // Metadata is not measured.
    let mut other = image(2);
    other.metadata = None;
    assert_eq!(other.build().unwrap().1, two);
}

#[test]
fn signed_image_pcr8_and_verification() {
    let key = test_key("cloister test signer");
    let cert_der = key.certificate().der().to_vec();
    let mut img = image(2);
    let (_, unsigned) = img.build().unwrap();
    img.signing = Some(key);
    let (bytes, pcrs) = img.build().unwrap();
    assert_eq!(pcrs.pcr0, unsigned.pcr0, "signing does not change PCR0");
    assert_eq!(pcrs.pcr2, unsigned.pcr2);
    assert_eq!(
        pcrs.pcr8,
        Some(Pcr::extend_from_zero(&sha384(&[&cert_der])))
    );
    let d = describe(&bytes).unwrap();
    assert_eq!(d.pcrs, pcrs);
    assert_eq!(d.signer.as_deref(), Some("CN=cloister test signer"));
    assert_eq!(d.sections.last().unwrap().kind, SectionType::Signature);
    // A second build signs again (ECDSA is randomized) with the same PCRs.
    let (again, pcrs_again) = img.build().unwrap();
    assert_eq!(pcrs_again, pcrs);
    assert_eq!(describe(&again).unwrap().pcrs, pcrs);
}

/// Rewrites one section's data and fixes the CRC, so only the signature check can object.
fn replace_last_section(bytes: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let eif = parse(bytes).unwrap();
    let last = eif.sections.last().unwrap();
    let start = last.offset as usize + SECTION_HEADER_LEN;
    let mut data = last.data.to_vec();
    f(&mut data);
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(&data);
    let i = eif.sections.len() - 1;
    set_u64(&mut out, size_slot(i), data.len() as u64);
    set_u64(&mut out, start - 8, data.len() as u64);
    fix_crc(&mut out);
    out
}

fn fix_crc(bytes: &mut [u8]) {
    // Independent CRC-32 (bitwise) so the test does not lean on the crate's table.
    let mut c = 0xFFFF_FFFFu32;
    for b in bytes[..HEADER_LEN - 4].iter().chain(&bytes[HEADER_LEN..]) {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&(!c).to_be_bytes());
}

#[test]
fn tampered_signatures_are_refused() {
    let mut img = image(2);
    img.signing = Some(test_key("signer"));
    let (bytes, _) = img.build().unwrap();

    // The image changed after signing: the signature is over another PCR0.
    let eif = parse(&bytes).unwrap();
    let mut changed = bytes.clone();
    let kernel_at = eif.sections[0].offset as usize + SECTION_HEADER_LEN;
    changed[kernel_at] ^= 1;
    fix_crc(&mut changed);
    assert_eq!(
        code(describe(&changed).unwrap_err()),
        "EIF-SIGNATURE-INVALID"
    );

    // A byte of the ECDSA signature flipped (it is the last uint8 of the section's array).
    let flipped = replace_last_section(&bytes, |d| {
        let n = d.len();
        d[n - 1] = if d[n - 1] == 0x17 { 0x16 } else { 0x17 };
    });
    assert_eq!(
        code(describe(&flipped).unwrap_err()),
        "EIF-SIGNATURE-INVALID"
    );

    // Another signer: same PCR0, another PCR8.
    let mut other = image(2);
    other.signing = Some(test_key("other"));
    let (other_bytes, other_pcrs) = other.build().unwrap();
    assert_ne!(
        describe(&other_bytes).unwrap().pcrs.pcr8,
        describe(&bytes).unwrap().pcrs.pcr8
    );
    assert_eq!(other_pcrs.pcr0, describe(&bytes).unwrap().pcrs.pcr0);

    // Garbage in place of the signature section.
    let garbage = replace_last_section(&bytes, |d| *d = vec![0x82, 0x01]);
    assert_eq!(code(describe(&garbage).unwrap_err()), "EIF-SIGNATURE");
}

#[test]
fn corruptions_are_refused_with_their_code() {
    let (good, _) = image(2).build().unwrap();
    parse(&good).unwrap();

    let mut bad_magic = good.clone();
    bad_magic[0] = b'x';
    assert_eq!(err_code(&bad_magic), "EIF-MAGIC");

    let mut bad_version = good.clone();
    bad_version[5] = 3;
    assert_eq!(err_code(&bad_version), "EIF-VERSION");

    let mut bad_flags = good.clone();
    bad_flags[7] = 2;
    assert_eq!(err_code(&bad_flags), "EIF-FLAGS");

    for at in [HEADER_LEN - 1, HEADER_LEN - 4, good.len() - 1, 20] {
        let mut flipped = good.clone();
        flipped[at] ^= 0x40;
        assert_eq!(err_code(&flipped), "EIF-CRC", "byte {at}");
    }

    let mut past_end = good.clone();
    set_u64(&mut past_end, size_slot(4), 1 << 40);
    assert_eq!(err_code(&past_end), "EIF-SECTION-BOUNDS");
    let mut wraps = good.clone();
    set_u64(&mut wraps, offset_slot(4), u64::MAX - 4);
    assert_eq!(err_code(&wraps), "EIF-SECTION-BOUNDS");

    let mut overlap = good.clone();
    let kernel = u64::from_be_bytes(good[offset_slot(0)..offset_slot(0) + 8].try_into().unwrap());
    set_u64(&mut overlap, offset_slot(1), kernel + 4);
    assert_eq!(err_code(&overlap), "EIF-SECTION-OVERLAP");
    let mut into_header = good.clone();
    set_u64(&mut into_header, offset_slot(0), 100);
    assert_eq!(err_code(&into_header), "EIF-SECTION-OVERLAP");

    let mut too_many = good.clone();
    too_many[26..28].copy_from_slice(&33u16.to_be_bytes());
    assert_eq!(err_code(&too_many), "EIF-SECTION-COUNT");
    let mut none = good.clone();
    none[26..28].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(err_code(&none), "EIF-SECTION-COUNT");

    assert_eq!(err_code(&good[..HEADER_LEN - 1]), "EIF-TRUNCATED");
    assert_eq!(err_code(&[]), "EIF-TRUNCATED");
    assert_eq!(err_code(&good[..good.len() - 1]), "EIF-SECTION-BOUNDS");

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(err_code(&trailing), "EIF-SECTION");

    let mut size_disagrees = good.clone();
    let cmdline_at =
        u64::from_be_bytes(good[offset_slot(1)..offset_slot(1) + 8].try_into().unwrap()) as usize;
    set_u64(&mut size_disagrees, cmdline_at + 4, 3);
    assert_eq!(err_code(&size_disagrees), "EIF-SECTION");

    let mut bad_type = good.clone();
    bad_type[cmdline_at..cmdline_at + 2].copy_from_slice(&9u16.to_be_bytes());
    assert_eq!(err_code(&bad_type), "EIF-SECTION-TYPE");

    let mut swapped = good.clone();
    swapped[cmdline_at..cmdline_at + 2].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(err_code(&swapped), "EIF-ORDER");
}

#[test]
fn builder_refuses_bad_inputs() {
    let mut nul = image(1);
    nul.cmdline = "a\0b".into();
    assert_eq!(code(nul.build().unwrap_err()), "EIF-CMDLINE");
    let none = Image::new(vec![1], "x", vec![]);
    assert_eq!(code(none.build().unwrap_err()), "EIF-ORDER");
    let many = Image::new(vec![1], "x", vec![Ramdisk::from_bytes(vec![]); 31]);
    assert_eq!(code(many.build().unwrap_err()), "EIF-SECTION-COUNT");
    let thirty = Image::new(vec![1], "x", vec![Ramdisk::from_bytes(vec![]); 30]);
    let (bytes, _) = thirty.build().unwrap();
    assert_eq!(parse(&bytes).unwrap().sections.len(), 32);
}

#[test]
fn keys_that_do_not_fit_are_refused() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = rcgen::CertificateParams::new(vec![])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let e = SigningKey::from_pem(other.serialize_pem().as_bytes(), cert.pem().as_bytes());
    assert_eq!(code(e.unwrap_err()), "EIF-KEY");
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert256 = rcgen::CertificateParams::new(vec![])
        .unwrap()
        .self_signed(&p256)
        .unwrap();
    let e = SigningKey::from_pem(p256.serialize_pem().as_bytes(), cert256.pem().as_bytes());
    assert_eq!(code(e.unwrap_err()), "EIF-CERT");
    let e = SigningKey::from_pem(b"nope", cert.pem().as_bytes());
    assert_eq!(code(e.unwrap_err()), "EIF-KEY");
}

fn signed_sample() -> &'static [u8] {
    static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let mut img = image(2);
        img.signing = Some(test_key("fuzz"));
        img.build().unwrap().0
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random mutations of a valid signed image never panic: they parse, or fail with a code.
    #[test]
    fn mutations_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        fix in any::<bool>(),
    ) {
        let mut bytes = signed_sample().to_vec();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if fix && bytes.len() >= HEADER_LEN {
            // Past the CRC, so that the structure and signature checks see the mutation.
            fix_crc(&mut bytes);
        }
        if let Err(e) = describe(&bytes) {
            prop_assert!(cloister_eif::CODES.contains(&e.code().as_ref()));
        }
    }

    /// Arbitrary bytes, with and without a valid-looking header, never panic either.
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = describe(&bytes);
        if bytes.len() >= 8 {
            bytes[..4].copy_from_slice(b".eif");
            bytes[4..6].copy_from_slice(&4u16.to_be_bytes());
            bytes[6..8].copy_from_slice(&0u16.to_be_bytes());
        }
        let _ = describe(&bytes);
        let _ = cloister_eif::Signature::parse(&bytes);
    }
}
