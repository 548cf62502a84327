//! cloister-eif against the reference implementation (aws-nitro-enclaves-image-format 0.8.1,
//! what nitro-cli builds and describes EIFs with): same inputs, same bytes and PCRs; each reads
//! and verifies what the other wrote.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use aws_nitro_enclaves_image_format::utils::{
    EifBuilder, PcrSignatureChecker, SignKeyData, get_pcrs,
};
use cloister_eif::cpio::Entry;
use cloister_eif::{Image, Pcrs, Ramdisk, SigningKey, describe};
use sha2::{Digest, Sha384};

const CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";

fn identity() -> EifIdentityInfo {
    EifIdentityInfo {
        img_name: "cloister".into(),
        img_version: "1".into(),
        build_info: EifBuildInfo {
            build_time: "1970-01-01T00:00:00Z".into(),
            build_tool: "cloister".into(),
            build_tool_version: "0".into(),
            img_os: "linux".into(),
            img_kernel: "6.1".into(),
        },
        docker_info: serde_json::json!({}),
        custom_info: serde_json::json!({}),
    }
}

struct Inputs {
    dir: tempfile::TempDir,
    image: Image,
}

/// A kernel-sized blob, a cpio init ramdisk and an app ramdisk, as files and as an `Image`.
fn inputs(ramdisks: usize) -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let kernel: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut rds = vec![
        Ramdisk::from_entries(&[
            Entry::file("init", 0o755, vec![7u8; 100_000]),
            Entry::char_device("dev/console", 0o600, 5, 1),
            Entry::file("lib/modules/vsock.ko", 0o644, b"module".to_vec()),
        ])
        .unwrap(),
    ];
    for i in 1..ramdisks {
        rds.push(Ramdisk::from_bytes(vec![i as u8; 10_000 * i]));
    }
    fs::write(dir.path().join("kernel"), &kernel).unwrap();
    for (i, r) in rds.iter().enumerate() {
        fs::write(dir.path().join(format!("ramdisk{i}")), r.as_bytes()).unwrap();
    }
    let mut image = Image::new(kernel, CMDLINE, rds);
    image.metadata = Some(serde_json::to_vec(&identity()).unwrap());
    Inputs { dir, image }
}

fn reference_build(
    inp: &Inputs,
    sign: Option<(&Path, &Path)>,
) -> (Vec<u8>, BTreeMap<String, String>) {
    let dir = inp.dir.path();
    let sign_info = sign.map(|(key, cert)| SignKeyData::new(key.to_str().unwrap(), cert).unwrap());
    let mut b = EifBuilder::new(
        &dir.join("kernel"),
        CMDLINE.into(),
        sign_info,
        Sha384::new(),
        0,
        identity(),
    );
    for i in 0..inp.image.ramdisks.len() {
        b.add_ramdisk(&dir.join(format!("ramdisk{i}")));
    }
    let out = dir.join("reference.eif");
    let mut f = fs::File::create(&out).unwrap();
    let measurements = b.write_to(&mut f);
    drop(f);
    (fs::read(out).unwrap(), measurements)
}

fn assert_pcrs(ours: &Pcrs, theirs: &BTreeMap<String, String>) {
    assert_eq!(ours.pcr0.to_hex(), theirs["PCR0"]);
    assert_eq!(ours.pcr1.to_hex(), theirs["PCR1"]);
    assert_eq!(ours.pcr2.to_hex(), theirs["PCR2"]);
    assert_eq!(ours.pcr8.map(|p| p.to_hex()), theirs.get("PCR8").cloned());
}

/// The reference reader on our file: CRC and PCRs.
fn reference_read(path: &Path, signed: bool) -> (EifReader, BTreeMap<String, String>) {
    let mut r = EifReader::from_eif(path.to_str().unwrap().into()).unwrap();
    assert!(r.check_crc(), "the reference finds our CRC wrong");
    let m = get_pcrs(
        &mut r.image_hasher,
        &mut r.bootstrap_hasher,
        &mut r.app_hasher,
        &mut r.cert_hasher,
        Sha384::new(),
        signed,
    )
    .unwrap();
    (r, m)
}

#[test]
fn unsigned_images_are_byte_identical_to_the_reference() {
    for n in [1, 2, 3] {
        let inp = inputs(n);
        let (ours, pcrs) = inp.image.build().unwrap();
        let (theirs, measurements) = reference_build(&inp, None);
        assert_eq!(ours.len(), theirs.len());
        assert!(ours == theirs, "{n} ramdisks: bytes differ");
        assert_pcrs(&pcrs, &measurements);
        assert_eq!(describe(&theirs).unwrap().pcrs, pcrs);
        let path = inp.dir.path().join("ours.eif");
        fs::write(&path, &ours).unwrap();
        let (_, read) = reference_read(&path, false);
        assert_pcrs(&pcrs, &read);
        println!(
            "{n} ramdisk(s): PCR0 {} PCR1 {} PCR2 {}",
            pcrs.pcr0, pcrs.pcr1, pcrs.pcr2
        );
    }
}

#[test]
fn signed_images_verify_both_ways() {
    let inp = inputs(2);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "oracle signer");
    let cert = params.self_signed(&key).unwrap();
    let (key_path, cert_path) = (
        inp.dir.path().join("key.pem"),
        inp.dir.path().join("cert.pem"),
    );
    fs::write(&key_path, key.serialize_pem()).unwrap();
    fs::write(&cert_path, cert.pem()).unwrap();

    // The reference signs; we parse, verify and measure.
    let (theirs, measurements) = reference_build(&inp, Some((&key_path, &cert_path)));
    let d = describe(&theirs).unwrap();
    assert_pcrs(&d.pcrs, &measurements);
    assert_eq!(d.signer.as_deref(), Some("CN=oracle signer"));

    // We sign; the reference reads, measures and verifies.
    let mut image = inp.image;
    image.signing =
        Some(SigningKey::from_pem(key.serialize_pem().as_bytes(), cert.pem().as_bytes()).unwrap());
    let (ours, pcrs) = image.build().unwrap();
    assert_pcrs(&pcrs, &measurements);
    let path = inp.dir.path().join("ours-signed.eif");
    fs::write(&path, &ours).unwrap();
    let (mut reader, read) = reference_read(&path, true);
    assert_pcrs(&pcrs, &read);
    reader.get_certificate_info(read).unwrap();
    assert_eq!(
        reader.sign_check,
        Some(true),
        "the reference does not accept our signature"
    );
    PcrSignatureChecker::from_eif(path.to_str().unwrap())
        .unwrap()
        .verify()
        .unwrap();

    // Apart from the signature section (ECDSA is randomized, and its bytes are written as a
    // CBOR array of uint8, so even its length varies), our layout is the reference's.
    let (a, b) = (
        describe(&ours).unwrap().sections,
        describe(&theirs).unwrap().sections,
    );
    assert_eq!(a[..a.len() - 1], b[..b.len() - 1]);
    assert_eq!(a.last().unwrap().offset, b.last().unwrap().offset);
    let sig_at = a.last().unwrap().offset as usize;
    assert_eq!(ours[548..sig_at], theirs[548..sig_at]);
}
