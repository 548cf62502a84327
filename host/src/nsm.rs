//! The emulated NSM: `cloister nsm serve`, run by the launcher (the "hypervisor" side).
//!
//! It answers the NSM API's CBOR requests over vsock (or a Unix socket in process mode) and signs
//! attestation documents with the dev PKI, over PCRs it computed itself from the image. Only the
//! enclave may reach it: a Unix socket is created 0600 inside a 0700 directory owned by the
//! launcher's user, so the proxy, running as another user, cannot ask for a document carrying
//! its own key (see "Trust in emulation" in the architecture note).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use clap::Subcommand;
use cloister_attestation::dev_signer::{DevPki, DocumentRequest};
use cloister_attestation::nsm_api::{ErrorCode, MAX_REQUEST, Request, Response};
use cloister_attestation::{MAX_FIELD_LEN, PCR_COUNT, PcrIndex, PcrValue, Pcrs, Timestamp};
use cloister_wire::Address;
use cloister_wire::frame::{read_raw, write_raw};

use crate::measure;

#[derive(Debug, Subcommand)]
pub(crate) enum NsmCommand {
    /// Serve the emulated NSM for one enclave.
    Serve {
        /// The dev PKI directory (created if missing).
        #[arg(long)]
        dev_pki: PathBuf,
        /// Where the enclave reaches the NSM: vsock://CID:PORT or unix:///dir/nsm.sock.
        #[arg(long)]
        listen: Address,
        /// The enclave image (EIF) to measure.
        #[arg(long, conflicts_with = "measure", required_unless_present = "measure")]
        eif: Option<PathBuf>,
        /// Process mode: the enclave binary to measure.
        #[arg(long)]
        measure: Option<PathBuf>,
        /// Parent instance id (PCR4).
        #[arg(long)]
        parent_instance_id: Option<String>,
        /// Parent IAM role ARN (PCR3).
        #[arg(long)]
        parent_role: Option<String>,
    },
    /// Ask an NSM to describe itself (a reachability check).
    Describe {
        /// The NSM's address.
        #[arg(long)]
        nsm: Address,
    },
}

/// The state of one emulated NSM.
struct Emulated {
    pki: DevPki,
    module_id: String,
    pcrs: [PcrValue; PCR_COUNT as usize],
    locked: [bool; PCR_COUNT as usize],
}

impl Emulated {
    fn new(pki: DevPki, module_id: String, boot: &Pcrs) -> Self {
        let mut pcrs = [PcrValue::ZERO; PCR_COUNT as usize];
        let mut locked = [false; PCR_COUNT as usize];
        for (i, v) in boot.iter() {
            pcrs[usize::from(i.get())] = *v;
            locked[usize::from(i.get())] = true;
        }
        Self {
            pki,
            module_id,
            pcrs,
            locked,
        }
    }

    fn index(i: u16) -> Option<usize> {
        (i < u16::from(PCR_COUNT)).then_some(usize::from(i))
    }

    fn handle(&mut self, req: Request) -> Response {
        let err = Response::Error;
        match req {
            Request::DescribeNSM => Response::DescribeNSM {
                version_major: 1,
                version_minor: 0,
                version_patch: 0,
                module_id: self.module_id.clone(),
                max_pcrs: u16::from(PCR_COUNT),
                locked_pcrs: (0..u16::from(PCR_COUNT))
                    .filter(|i| self.locked[usize::from(*i)])
                    .collect(),
                digest: "SHA384".into(),
            },
            Request::DescribePCR { index } => match Self::index(index) {
                Some(i) => Response::DescribePCR {
                    lock: self.locked[i],
                    data: self.pcrs[i].as_bytes().to_vec(),
                },
                None => err(ErrorCode::InvalidIndex),
            },
            Request::ExtendPCR { index, data } => match Self::index(index) {
                None => err(ErrorCode::InvalidIndex),
                Some(i) if self.locked[i] => err(ErrorCode::ReadOnlyIndex),
                Some(_) if data.len() > MAX_FIELD_LEN => err(ErrorCode::InputTooLarge),
                Some(i) => {
                    self.pcrs[i] = self.pcrs[i].extend(&data);
                    Response::ExtendPCR {
                        data: self.pcrs[i].as_bytes().to_vec(),
                    }
                }
            },
            Request::LockPCR { index } => match Self::index(index) {
                Some(i) => {
                    self.locked[i] = true;
                    Response::LockPCR
                }
                None => err(ErrorCode::InvalidIndex),
            },
            Request::LockPCRs { range } => match usize::from(range) {
                r if r <= usize::from(PCR_COUNT) => {
                    self.locked[..r].iter_mut().for_each(|l| *l = true);
                    Response::LockPCRs
                }
                _ => err(ErrorCode::InvalidIndex),
            },
            Request::GetRandom => {
                let mut random = vec![0u8; 256];
                match SystemRandom::new().fill(&mut random) {
                    Ok(()) => Response::GetRandom { random },
                    Err(_) => err(ErrorCode::InternalError),
                }
            }
            Request::Attestation {
                user_data,
                nonce,
                public_key,
            } => {
                let too_big =
                    |f: &Option<Vec<u8>>| f.as_ref().is_some_and(|b| b.len() > MAX_FIELD_LEN);
                if too_big(&user_data)
                    || too_big(&nonce)
                    || too_big(&public_key)
                    || public_key.as_ref().is_some_and(Vec::is_empty)
                {
                    return err(ErrorCode::InvalidArgument);
                }
                let pcrs: Pcrs = (0..PCR_COUNT)
                    .filter(|i| self.locked[usize::from(*i)])
                    .filter_map(|i| {
                        PcrIndex::new(i.into()).map(|idx| (idx, self.pcrs[usize::from(i)]))
                    })
                    .collect();
                let request = DocumentRequest {
                    module_id: self.module_id.clone(),
                    pcrs,
                    public_key,
                    user_data,
                    nonce,
                };
                match self.pki.issue(&request, Timestamp::now()) {
                    Ok(document) => Response::Attestation { document },
                    Err(e) => {
                        log(&format!("attestation failed: {e}"));
                        err(ErrorCode::InternalError)
                    }
                }
            }
        }
    }
}

fn log(msg: &str) {
    eprintln!("cloister nsm: {msg}");
}

/// Creates the socket's directory 0700 (or checks an existing one is ours and private).
fn private_dir(listen: &Address) -> Result<()> {
    let Address::Unix { path, .. } = listen else {
        return Ok(());
    };
    let dir = path.parent().context("socket path has no directory")?;
    if dir.exists() {
        let meta = std::fs::metadata(dir)?;
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            bail!(
                "{} is not owned by this user; the NSM socket's directory must be",
                dir.display()
            );
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    } else {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(())
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = SystemRandom::new().fill(&mut b);
    hex::encode(b)
}

const READ_TIMEOUT: Duration = Duration::from_secs(300);

async fn serve(listen: Address, state: Arc<Mutex<Emulated>>) -> Result<()> {
    private_dir(&listen)?;
    let listener = listen.listen(0o600).await?;
    eprintln!("cloister nsm: serving the emulated NSM on {listen}");
    loop {
        let mut stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log(&format!("accept: {e}"));
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let body = match read_raw(&mut stream, MAX_REQUEST, READ_TIMEOUT).await {
                    Ok(Some(b)) => b,
                    Ok(None) => return,
                    Err(cloister_wire::WireError::TooLarge { .. }) => {
                        let _ = write_raw(
                            &mut stream,
                            &Response::Error(ErrorCode::InputTooLarge).to_cbor(),
                        )
                        .await;
                        return;
                    }
                    Err(_) => return,
                };
                let response = match Request::from_cbor(&body) {
                    Ok(req) => state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .handle(req),
                    Err(_) => Response::Error(ErrorCode::InvalidOperation),
                };
                if write_raw(&mut stream, &response.to_cbor()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// One request to an NSM over a wire address.
pub(crate) async fn call(nsm: &Address, req: &Request) -> Result<Response> {
    let mut s = nsm.connect().await?;
    write_raw(&mut s, &req.to_cbor()).await?;
    let body = read_raw(
        &mut s,
        cloister_attestation::nsm_api::MAX_RESPONSE,
        Duration::from_secs(30),
    )
    .await?
    .context("the NSM closed the connection")?;
    Ok(Response::from_cbor(&body)?)
}

pub(crate) async fn run(cmd: NsmCommand) -> Result<()> {
    match cmd {
        NsmCommand::Serve {
            dev_pki,
            listen,
            eif,
            measure,
            parent_instance_id,
            parent_role,
        } => {
            let pcrs = measure::pcrs(
                eif.as_deref(),
                measure.as_deref(),
                parent_role.as_deref(),
                parent_instance_id.as_deref(),
            )?;
            let pki = DevPki::load_or_generate(&dev_pki, Timestamp::now())?;
            let parent = parent_instance_id.unwrap_or_else(|| "i-00000000000000000".into());
            let module_id = format!("{parent}-enc{}", random_hex(8));
            eprintln!(
                "cloister nsm: module {module_id}, PCR0 {}",
                pcrs.get(PcrIndex::IMAGE)
                    .map(|v| v.to_hex())
                    .unwrap_or_default()
            );
            serve(
                listen,
                Arc::new(Mutex::new(Emulated::new(pki, module_id, &pcrs))),
            )
            .await
        }
        NsmCommand::Describe { nsm } => {
            match call(&nsm, &Request::DescribeNSM).await? {
                Response::DescribeNSM {
                    module_id,
                    locked_pcrs,
                    ..
                } => println!("module_id {module_id} locked {locked_pcrs:?}"),
                other => bail!("unexpected answer {other:?}"),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emulated() -> Emulated {
        let pcrs = measure::pcrs(
            None,
            Some(std::path::Path::new("/proc/self/exe")),
            None,
            Some("i-0123"),
        )
        .unwrap();
        Emulated::new(
            DevPki::generate(Timestamp::now()).unwrap(),
            "i-0123-enc0".into(),
            &pcrs,
        )
    }

    #[test]
    fn pcr_rules_follow_the_nsm() {
        let mut n = emulated();
        assert_eq!(
            n.handle(Request::ExtendPCR {
                index: 0,
                data: vec![1]
            }),
            Response::Error(ErrorCode::ReadOnlyIndex)
        );
        assert_eq!(
            n.handle(Request::ExtendPCR {
                index: 32,
                data: vec![1]
            }),
            Response::Error(ErrorCode::InvalidIndex)
        );
        let Response::ExtendPCR { data } = n.handle(Request::ExtendPCR {
            index: 16,
            data: b"app".to_vec(),
        }) else {
            panic!()
        };
        assert_eq!(data, PcrValue::measure(b"app").as_bytes().to_vec());
        assert_eq!(n.handle(Request::LockPCR { index: 16 }), Response::LockPCR);
        assert_eq!(
            n.handle(Request::ExtendPCR {
                index: 16,
                data: vec![1]
            }),
            Response::Error(ErrorCode::ReadOnlyIndex)
        );
        let Response::DescribeNSM { locked_pcrs, .. } = n.handle(Request::DescribeNSM) else {
            panic!()
        };
        assert_eq!(locked_pcrs, (0..17).collect::<Vec<u16>>());
        let Response::GetRandom { random } = n.handle(Request::GetRandom) else {
            panic!()
        };
        assert_eq!(random.len(), 256);
    }

    #[test]
    fn documents_carry_locked_pcrs_and_verify_with_the_dev_root() {
        let mut n = emulated();
        n.handle(Request::ExtendPCR {
            index: 16,
            data: b"x".to_vec(),
        });
        n.handle(Request::LockPCR { index: 16 });
        n.handle(Request::ExtendPCR {
            index: 17,
            data: b"unlocked".to_vec(),
        });
        let Response::Attestation { document } = n.handle(Request::Attestation {
            user_data: None,
            nonce: Some(vec![5; 8]),
            public_key: Some(vec![1; 10]),
        }) else {
            panic!()
        };
        let root = n.pki.trust_anchor().unwrap();
        let v = cloister_attestation::Verifier::new(vec![root])
            .verify(
                &document,
                cloister_attestation::VerifyAt::Now,
                &cloister_attestation::Policy::new().nonce(vec![5; 8]),
            )
            .unwrap();
        assert_eq!(v.pcrs.len(), 17);
        assert!(v.pcrs.get(PcrIndex::new(17).unwrap()).is_none());
        assert_eq!(
            v.pcrs.get(PcrIndex::new(4).unwrap()),
            Some(&PcrValue::measure(b"i-0123"))
        );
        let big = n.handle(Request::Attestation {
            user_data: Some(vec![0; 1025]),
            nonce: None,
            public_key: None,
        });
        assert_eq!(big, Response::Error(ErrorCode::InvalidArgument));
    }
}
