//! An SGX application's quoting flow through Fortanix's `aesm-client` crate, as a test peer for
//! `confnode quote-helper`.
//!
//! The crate has no enclave of its own to make a REPORT, so the REPORT comes from the test
//! driver: this program prints the quoting enclave's target info as one JSON line on stdout, reads
//! the REPORT (hex, one line) from stdin, gets the quote and writes it to `--out`.
//!
//! ```text
//! aesm-client-quote --socket PATH --out FILE --nonce HEX [--att-key-id HEX]
//! ```
//!
//! Exit codes: 0 quote written; 1 the AESM call failed (stderr names the crate's error, e.g.
//! `AesmCode(UnsupportedAttKeyId_38)`); 2 usage or I/O error.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use aesm_client::unix::AesmClientExt;
use aesm_client::AesmClient;

/// `sgx_att_key_id_ext_t` is 256 bytes; its 158-byte base ends with the little-endian
/// `algorithm_id` (`sgx_ql_attestation_algorithm_id_t`) at offset 154.
const ALGORITHM_ID_OFFSET: usize = 154;
const SGX_QL_ALG_ECDSA_P256: u32 = 2;
const REPORT_SIZE: usize = 432;

struct Args {
    socket: PathBuf,
    out: PathBuf,
    nonce: Vec<u8>,
    att_key_id: Option<Vec<u8>>,
}

fn usage(message: &str) -> String {
    format!(
        "{message}\nusage: aesm-client-quote --socket PATH --out FILE --nonce HEX [--att-key-id HEX]"
    )
}

fn parse_args() -> Result<Args, String> {
    let mut socket = None;
    let mut out = None;
    let mut nonce = None;
    let mut att_key_id = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--out" => out = Some(PathBuf::from(value)),
            "--nonce" => nonce = Some(from_hex(&value).map_err(|e| usage(&e))?),
            "--att-key-id" => att_key_id = Some(from_hex(&value).map_err(|e| usage(&e))?),
            _ => return Err(usage(&format!("unknown option {flag}"))),
        }
    }
    Ok(Args {
        socket: socket.ok_or_else(|| usage("--socket is required"))?,
        out: out.ok_or_else(|| usage("--out is required"))?,
        nonce: nonce.ok_or_else(|| usage("--nonce is required"))?,
        att_key_id,
    })
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.len() % 2 != 0 || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("not an even-length hex string: {text:.40}"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn is_ecdsa_p256(key_id: &[u8]) -> bool {
    key_id
        .get(ALGORITHM_ID_OFFSET..ALGORITHM_ID_OFFSET + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == SGX_QL_ALG_ECDSA_P256)
        .unwrap_or(false)
}

/// Why the run stopped: the AESM side (exit 1) or this program's own input/output (exit 2).
enum Failure {
    Aesm(&'static str, aesm_client::Error),
    Local(String),
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Failure::Local(err.to_string())
    }
}

fn run(args: Args) -> Result<(), Failure> {
    let client = AesmClient::with_path(&args.socket);
    let key_ids = client
        .get_supported_att_key_ids()
        .map_err(|e| Failure::Aesm("get_supported_att_key_ids", e))?;
    let att_key_id = match args.att_key_id {
        Some(id) => id,
        None => key_ids
            .iter()
            .find(|id| is_ecdsa_p256(id))
            .cloned()
            .ok_or_else(|| Failure::Local("AESM offers no ECDSA-P256 attestation key id".into()))?,
    };
    let info = client
        .init_quote_ex(att_key_id.clone())
        .map_err(|e| Failure::Aesm("init_quote_ex", e))?;
    let listed: Vec<String> = key_ids.iter().map(|id| format!("\"{}\"", to_hex(id))).collect();
    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "{{\"att_key_ids\":[{}],\"att_key_id\":\"{}\",\"target_info\":\"{}\",\"pub_key_id\":\"{}\"}}",
        listed.join(","),
        to_hex(&att_key_id),
        to_hex(info.target_info()),
        to_hex(info.pub_key_id()),
    )?;
    stdout.flush()?;

    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    let report = from_hex(&line).map_err(Failure::Local)?;
    if report.len() != REPORT_SIZE {
        // The crate derives the QE report's target from the REPORT and panics on a short one.
        return Err(Failure::Local(format!(
            "REPORT is {} bytes, expected {REPORT_SIZE}",
            report.len()
        )));
    }
    let result = client
        .get_quote_ex(att_key_id, report, None, args.nonce)
        .map_err(|e| Failure::Aesm("get_quote_ex", e))?;
    std::fs::write(&args.out, result.quote())?;
    writeln!(
        stdout,
        "{{\"quote_size\":{},\"qe_report\":\"{}\"}}",
        result.quote().len(),
        to_hex(result.qe_report()),
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Aesm(call, err)) => {
            // Debug names the variant the crate surfaces, e.g. AesmCode(InvalidReport_47).
            eprintln!("{call}: {err:?} ({err})");
            ExitCode::from(1)
        }
        Err(Failure::Local(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
