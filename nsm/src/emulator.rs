//! An NSM in process: PCRs with Nitro's rules and a signer (the dev PKI), for the launcher to
//! serve to the enclave it boots, and for tests of the enclave without sockets or processes.
//!
//! Nitro's rules, as the emulator keeps them:
//! - PCR0-15 are measured before the enclave starts (0-2 the image, 3 the parent's role, 4 the
//!   parent instance, 8 the signing certificate; the others zero) and are read-only;
//! - PCR16-31 start at zero; the enclave may extend them (`SHA384(old || data)`) until it locks
//!   them, after which they are read-only too;
//! - a document carries PCR0-15 and every locked PCR16-31, the module id, a fresh timestamp, and
//!   the caller's public key, nonce and user data (each at most 1024 bytes).
//!
//! The PCRs come from whoever constructs the emulator (the launcher, from the image it boots),
//! never from the enclave's word.

use std::sync::{Mutex, PoisonError};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use cloister_attestation::dev_signer::{DevPki, DocumentRequest};
use cloister_attestation::{MAX_FIELD_LEN, PCR_COUNT, PcrIndex, PcrValue, Pcrs, Timestamp};

use crate::api::{ErrorCode, Request, Response};
use crate::{Nsm, NsmFuture};

/// PCRs below this index are measured at boot and read-only.
pub const FIRST_APPLICATION_PCR: u16 = 16;
/// Bytes of randomness per `GetRandom`, as the NSM answers.
const RANDOM_LEN: usize = 256;

struct State {
    pcrs: [PcrValue; PCR_COUNT as usize],
    locked: [bool; PCR_COUNT as usize],
}

/// The emulated NSM of one enclave.
pub struct Emulator {
    pki: DevPki,
    module_id: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("module_id", &self.module_id)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// An NSM whose boot PCRs (0-15; absent ones zero) are `boot`, signing with `pki`.
    /// PCRs of `boot` at 16 or above are ignored: the enclave owns those.
    pub fn new(pki: DevPki, module_id: String, boot: &Pcrs) -> Self {
        let mut pcrs = [PcrValue::ZERO; PCR_COUNT as usize];
        let mut locked = [false; PCR_COUNT as usize];
        for i in 0..FIRST_APPLICATION_PCR {
            locked[usize::from(i)] = true;
        }
        for (i, v) in boot.iter() {
            if u16::from(i.get()) < FIRST_APPLICATION_PCR {
                pcrs[usize::from(i.get())] = *v;
            }
        }
        Self {
            pki,
            module_id,
            state: Mutex::new(State { pcrs, locked }),
        }
    }

    /// The module id documents carry.
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// The dev PKI that signs this NSM's documents.
    pub fn pki(&self) -> &DevPki {
        &self.pki
    }

    fn index(i: u16) -> Option<usize> {
        (i < u16::from(PCR_COUNT)).then_some(usize::from(i))
    }

    /// Answers one request, as the NSM would.
    pub fn handle(&self, request: Request) -> Response {
        let err = Response::Error;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match request {
            Request::DescribeNSM => Response::DescribeNSM {
                version_major: 1,
                version_minor: 0,
                version_patch: 0,
                module_id: self.module_id.clone(),
                max_pcrs: u16::from(PCR_COUNT),
                locked_pcrs: (0..u16::from(PCR_COUNT))
                    .filter(|i| st.locked[usize::from(*i)])
                    .collect(),
                digest: "SHA384".into(),
            },
            Request::DescribePCR { index } => match Self::index(index) {
                Some(i) => Response::DescribePCR {
                    lock: st.locked[i],
                    data: st.pcrs[i].as_bytes().to_vec(),
                },
                None => err(ErrorCode::InvalidIndex),
            },
            Request::ExtendPCR { index, data } => match Self::index(index) {
                None => err(ErrorCode::InvalidIndex),
                Some(i) if st.locked[i] => err(ErrorCode::ReadOnlyIndex),
                Some(_) if data.len() > MAX_FIELD_LEN => err(ErrorCode::InputTooLarge),
                Some(i) => {
                    st.pcrs[i] = st.pcrs[i].extend(&data);
                    Response::ExtendPCR {
                        data: st.pcrs[i].as_bytes().to_vec(),
                    }
                }
            },
            Request::LockPCR { index } => match Self::index(index) {
                Some(i) => {
                    st.locked[i] = true;
                    Response::LockPCR
                }
                None => err(ErrorCode::InvalidIndex),
            },
            Request::LockPCRs { range } => match usize::from(range) {
                r if r <= usize::from(PCR_COUNT) => {
                    st.locked[..r].iter_mut().for_each(|l| *l = true);
                    Response::LockPCRs
                }
                _ => err(ErrorCode::InvalidIndex),
            },
            Request::GetRandom => {
                let mut random = vec![0u8; RANDOM_LEN];
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
                    .filter(|i| u16::from(*i) < FIRST_APPLICATION_PCR || st.locked[usize::from(*i)])
                    .filter_map(|i| {
                        PcrIndex::new(i.into()).map(|idx| (idx, st.pcrs[usize::from(i)]))
                    })
                    .collect();
                drop(st);
                let request = DocumentRequest {
                    module_id: self.module_id.clone(),
                    pcrs,
                    public_key,
                    user_data,
                    nonce,
                };
                match self.pki.issue(&request, Timestamp::now()) {
                    Ok(document) => Response::Attestation { document },
                    Err(_) => err(ErrorCode::InternalError),
                }
            }
        }
    }
}

impl Nsm for Emulator {
    fn call(&self, request: Request) -> NsmFuture<'_> {
        Box::pin(async move { Ok(self.handle(request)) })
    }
}

#[cfg(test)]
mod tests {
    use cloister_attestation::{Policy, Verifier, VerifyAt};

    use super::*;

    fn emulator() -> Emulator {
        let pcrs: Pcrs = [
            (PcrIndex::IMAGE, PcrValue::measure(b"image")),
            (PcrIndex::new(4).unwrap(), PcrValue::measure(b"i-0123")),
        ]
        .into_iter()
        .collect();
        Emulator::new(
            DevPki::generate(Timestamp::now()).unwrap(),
            "i-0123-enc0123456789abcdef".into(),
            &pcrs,
        )
    }

    fn extend(n: &Emulator, index: u16, data: &[u8]) -> Response {
        n.handle(Request::ExtendPCR {
            index,
            data: data.to_vec(),
        })
    }

    #[test]
    fn boot_pcrs_are_read_only_and_application_pcrs_extend_until_locked() {
        let n = emulator();
        for i in [0, 5, 15] {
            assert_eq!(
                extend(&n, i, b"x"),
                Response::Error(ErrorCode::ReadOnlyIndex)
            );
        }
        assert_eq!(
            extend(&n, 32, b"x"),
            Response::Error(ErrorCode::InvalidIndex)
        );
        let Response::ExtendPCR { data } = extend(&n, 16, b"app") else {
            panic!("extend refused")
        };
        assert_eq!(data, PcrValue::measure(b"app").as_bytes().to_vec());
        assert_eq!(n.handle(Request::LockPCR { index: 16 }), Response::LockPCR);
        assert_eq!(
            extend(&n, 16, b"x"),
            Response::Error(ErrorCode::ReadOnlyIndex)
        );
        let Response::DescribeNSM { locked_pcrs, .. } = n.handle(Request::DescribeNSM) else {
            panic!("no description")
        };
        assert_eq!(locked_pcrs, (0..17).collect::<Vec<u16>>());
        assert_eq!(
            n.handle(Request::LockPCRs { range: 20 }),
            Response::LockPCRs
        );
        assert_eq!(
            extend(&n, 19, b"x"),
            Response::Error(ErrorCode::ReadOnlyIndex)
        );
        assert!(matches!(extend(&n, 20, b"x"), Response::ExtendPCR { .. }));
        assert_eq!(
            n.handle(Request::LockPCRs { range: 33 }),
            Response::Error(ErrorCode::InvalidIndex)
        );
        assert_eq!(
            extend(&n, 21, &[0; MAX_FIELD_LEN + 1]),
            Response::Error(ErrorCode::InputTooLarge)
        );
        let Response::GetRandom { random } = n.handle(Request::GetRandom) else {
            panic!("no randomness")
        };
        assert_eq!(random.len(), RANDOM_LEN);
        let Response::DescribePCR { lock, data } = n.handle(Request::DescribePCR { index: 0 })
        else {
            panic!("no PCR")
        };
        assert!(lock);
        assert_eq!(data, PcrValue::measure(b"image").as_bytes().to_vec());
    }

    #[test]
    fn documents_carry_boot_and_locked_pcrs_and_verify_with_the_dev_root() {
        let n = emulator();
        extend(&n, 16, b"x");
        n.handle(Request::LockPCR { index: 16 });
        extend(&n, 17, b"unlocked");
        let Response::Attestation { document } = n.handle(Request::Attestation {
            user_data: None,
            nonce: Some(vec![5; 8]),
            public_key: Some(vec![1; 10]),
        }) else {
            panic!("no document")
        };
        let root = n.pki().trust_anchor().unwrap();
        let v = Verifier::new(vec![root])
            .verify(&document, VerifyAt::Now, &Policy::new().nonce(vec![5; 8]))
            .unwrap();
        assert_eq!(v.pcrs.len(), 17, "PCR0-15 and the locked PCR16");
        assert!(v.pcrs.get(PcrIndex::new(17).unwrap()).is_none());
        assert_eq!(
            v.pcrs.get(PcrIndex::IMAGE),
            Some(&PcrValue::measure(b"image"))
        );
        assert_eq!(v.pcrs.get(PcrIndex::new(5).unwrap()), Some(&PcrValue::ZERO));
        assert!(v.module_id.starts_with("i-0123-enc"));
        for bad in [
            Request::Attestation {
                user_data: Some(vec![0; MAX_FIELD_LEN + 1]),
                nonce: None,
                public_key: None,
            },
            Request::Attestation {
                user_data: None,
                nonce: None,
                public_key: Some(Vec::new()),
            },
        ] {
            assert_eq!(n.handle(bad), Response::Error(ErrorCode::InvalidArgument));
        }
    }

    #[tokio::test]
    async fn served_over_a_stream_it_answers_the_client() {
        let n = emulator();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = crate::client::NsmClient::over(a);
        let server = crate::server::serve_connection(b, &n, std::time::Duration::from_secs(5));
        let talk = async {
            let nsm: &dyn Nsm = &client;
            let doc = nsm
                .attestation(Some(vec![3; 16]), Some(vec![4; 4]), None)
                .await
                .unwrap();
            let (id, locked) = nsm.describe().await.unwrap();
            drop(client);
            (doc, id, locked)
        };
        let (served, (doc, id, locked)) = tokio::join!(server, talk);
        served.unwrap();
        assert_eq!(id, n.module_id());
        assert_eq!(locked.len(), 16);
        let v = Verifier::new(vec![n.pki().trust_anchor().unwrap()])
            .verify(&doc, VerifyAt::Now, &Policy::new().nonce(vec![4; 4]))
            .unwrap();
        assert_eq!(v.public_key.as_deref(), Some(&[3u8; 16][..]));
    }
}
