//! A v2 client over plain HTTP (ureq): model metadata, readiness, and binary infer requests,
//! with the bytes each way and the time counted. A client may shape its own traffic to a rate
//! (`LinkModel`) where the link cannot be shaped by `tc` (no network namespaces): each request
//! then takes at least its bytes at that rate plus the delay.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::protocol::{encode_request, parse_response, ModelMetadata, HEADER_LENGTH};
use crate::wire::WireTensor;
use crate::{Result, ServeError};

/// A link modelled in the client: a rate in bits per second and a one-way delay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    pub bits_per_s: f64,
    pub delay: Duration,
}

impl LinkModel {
    /// How long `bytes` take over the link, the delay both ways included.
    pub fn time(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.bits_per_s) + 2 * self.delay
    }
}

pub struct Client {
    base: String,
    agent: ureq::Agent,
    link: Option<LinkModel>,
    response_limit: u64,
}

/// One infer call: the outputs and what it cost.
#[derive(Debug)]
pub struct Answer {
    pub outputs: Vec<WireTensor>,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub seconds: f64,
}

impl Client {
    /// A client of the server at `url` (`http://host:port`), each call within `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        let rest = base.strip_prefix("http://").ok_or_else(|| ServeError::Transport {
            url: url.into(),
            why: "expected http://HOST:PORT (edgerun's client speaks plain HTTP; put TLS in a proxy)".into(),
        })?;
        if rest.is_empty() || rest.contains('/') && !rest.starts_with('[') {
            return Err(ServeError::Transport {
                url: url.into(),
                why: "expected http://HOST:PORT with no path".into(),
            });
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            base,
            agent,
            link: None,
            response_limit: 1 << 30,
        })
    }

    /// Shapes every call to `link` (see [`LinkModel`]).
    pub fn with_link(mut self, link: LinkModel) -> Self {
        self.link = Some(link);
        self
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn transport(&self, e: impl std::fmt::Display) -> ServeError {
        ServeError::Transport {
            url: self.base.clone(),
            why: e.to_string(),
        }
    }

    fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let mut response = self.agent.get(&url).call().map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.response_limit)
            .read_to_vec()
            .map_err(|e| self.transport(e))?;
        Ok((status, body))
    }

    fn server_error(&self, status: u16, body: &[u8]) -> ServeError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
        ServeError::Server {
            url: self.base.clone(),
            status,
            message,
        }
    }

    /// Fails unless the server says it is ready.
    pub fn ready(&self) -> Result<()> {
        let (status, body) = self.get("/v2/health/ready")?;
        if status != 200 {
            return Err(self.server_error(status, &body));
        }
        Ok(())
    }

    /// The round trip of a readiness check, seconds (the median of `probes`).
    pub fn round_trip(&self, probes: usize) -> Result<f64> {
        let mut times = Vec::with_capacity(probes.max(1));
        for _ in 0..probes.max(1) {
            let started = Instant::now();
            self.ready()?;
            times.push(started.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    pub fn metadata(&self, model: &str) -> Result<ModelMetadata> {
        let (status, body) = self.get(&format!("/v2/models/{model}"))?;
        if status != 200 {
            return Err(self.server_error(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| self.transport(format!("malformed metadata: {e}")))
    }

    /// Runs `model` on `inputs`, every tensor binary both ways.
    pub fn infer(
        &self,
        model: &str,
        inputs: &[WireTensor],
        parameters: Map<String, Value>,
    ) -> Result<Answer> {
        let (body, header_length) = encode_request(inputs, parameters)?;
        let url = format!("{}/v2/models/{model}/infer", self.base);
        let started = Instant::now();
        let mut request = self
            .agent
            .post(&url)
            .content_type("application/octet-stream");
        if let Some(n) = header_length {
            request = request.header(HEADER_LENGTH, n.to_string());
        }
        let mut response = request.send(&body[..]).map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let header_length = response
            .headers()
            .get(HEADER_LENGTH)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| self.transport(format!("{HEADER_LENGTH} is not a byte count")))
            })
            .transpose()?;
        let reply = response
            .body_mut()
            .with_config()
            .limit(self.response_limit)
            .read_to_vec()
            .map_err(|e| self.transport(e))?;
        if status != 200 {
            return Err(self.server_error(status, &reply));
        }
        let (sent_bytes, received_bytes) = (body.len() as u64, reply.len() as u64);
        if let Some(link) = self.link {
            let floor = link.time(sent_bytes + received_bytes);
            if let Some(rest) = floor.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        let outputs = parse_response(&reply, header_length)
            .map_err(|e| self.transport(format!("malformed response: {e}")))?;
        Ok(Answer {
            outputs,
            sent_bytes,
            received_bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
