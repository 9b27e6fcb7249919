//! [`ServiceInstance`]: Curator x-discovery's `ServiceInstance`, as the JSON it writes.

use serde::{Deserialize, Serialize};

/// What kind of registration an instance is (Curator's `ServiceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceType {
    /// An ephemeral registration: it goes with the registering session.
    #[default]
    Dynamic,
    /// A static registration (configuration, not a live process).
    Static,
    /// A persistent registration that outlives sessions.
    Permanent,
    /// An ephemeral sequential registration.
    DynamicSequential,
}

/// One part of a [`UriSpec`]: literal text, or a variable such as `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UriPart {
    /// The text, or the variable's name.
    pub value: String,
    /// Whether `value` names a variable.
    pub variable: bool,
}

/// Curator's `UriSpec`: a template such as `{scheme}://{address}:{port}`, kept as its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UriSpec {
    /// The template's parts in order.
    pub parts: Vec<UriPart>,
}

impl UriSpec {
    /// Parses a template: `{name}` is a variable, anything else literal text.
    pub fn parse(template: &str) -> UriSpec {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match (rest.find('{'), rest.find('}')) {
                (Some(0), Some(end)) => {
                    parts.push(UriPart {
                        value: rest[1..end].to_owned(),
                        variable: true,
                    });
                    rest = &rest[end + 1..];
                }
                (Some(start), _) if start > 0 => {
                    parts.push(UriPart {
                        value: rest[..start].to_owned(),
                        variable: false,
                    });
                    rest = &rest[start..];
                }
                _ => {
                    parts.push(UriPart {
                        value: rest.to_owned(),
                        variable: false,
                    });
                    rest = "";
                }
            }
        }
        UriSpec { parts }
    }

    /// The URI for `instance`, as Curator's `UriSpec.build`: `scheme` is `https` when the
    /// instance has an SSL port and `http` otherwise; `name`, `id`, `address`, `port` and
    /// `ssl-port` come from the instance; an unknown variable is left empty.
    pub fn build(&self, instance: &ServiceInstance) -> String {
        let mut out = String::new();
        for part in &self.parts {
            if !part.variable {
                out.push_str(&part.value);
                continue;
            }
            let value = match part.value.as_str() {
                "scheme" => {
                    if instance.ssl_port.is_some() {
                        "https".to_owned()
                    } else {
                        "http".to_owned()
                    }
                }
                "name" => instance.name.clone(),
                "id" => instance.id.clone(),
                "address" => instance.address.clone().unwrap_or_default(),
                "port" => instance.port.map(|p| p.to_string()).unwrap_or_default(),
                "ssl-port" => instance.ssl_port.map(|p| p.to_string()).unwrap_or_default(),
                _ => String::new(),
            };
            out.push_str(&value);
        }
        out
    }
}

/// A registered instance of a service, as Curator x-discovery writes it into its znode
/// (`<base>/<name>/<id>`): the same field names, so Java services using Curator and Rust
/// services read each other's registrations. Fields this version does not know are kept and
/// written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstance {
    /// The service's name.
    pub name: String,
    /// The instance's id, unique within the service.
    pub id: String,
    /// Its address (host name or IP).
    pub address: Option<String>,
    /// Its plain port.
    pub port: Option<i32>,
    /// Its TLS port.
    pub ssl_port: Option<i32>,
    /// Any JSON value; Curator writes the payload object as its serializer makes it.
    pub payload: Option<serde_json::Value>,
    /// When it was registered, in ms since the Unix epoch.
    #[serde(rename = "registrationTimeUTC")]
    pub registration_time_utc: i64,
    /// What kind of registration it is.
    pub service_type: ServiceType,
    /// How to build its URI.
    pub uri_spec: Option<UriSpec>,
    /// Whether it takes traffic (Curator 4+; absent means enabled).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Fields of newer Curator versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn enabled() -> bool {
    true
}

impl ServiceInstance {
    /// A dynamic (ephemeral) instance of `name` with a random id, registered now.
    pub fn new(name: &str) -> ServiceInstance {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        ServiceInstance {
            name: name.to_owned(),
            id: uuid::Uuid::new_v4().to_string(),
            address: None,
            port: None,
            ssl_port: None,
            payload: None,
            registration_time_utc: now_ms,
            service_type: ServiceType::Dynamic,
            uri_spec: None,
            enabled: true,
            extra: serde_json::Map::new(),
        }
    }

    /// With this id.
    pub fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_owned();
        self
    }

    /// With this address and plain port.
    pub fn with_address(mut self, address: &str, port: u16) -> Self {
        self.address = Some(address.to_owned());
        self.port = Some(i32::from(port));
        self
    }

    /// With this TLS port.
    pub fn with_ssl_port(mut self, port: u16) -> Self {
        self.ssl_port = Some(i32::from(port));
        self
    }

    /// With this payload.
    pub fn with_payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// With this URI template (`{scheme}://{address}:{port}`).
    pub fn with_uri_spec(mut self, template: &str) -> Self {
        self.uri_spec = Some(UriSpec::parse(template));
        self
    }

    /// The URI its spec builds, if it has one.
    pub fn uri(&self) -> Option<String> {
        self.uri_spec.as_ref().map(|s| s.build(self))
    }

    /// The JSON written into the znode.
    pub fn to_json(&self) -> Vec<u8> {
        // A map of strings and JSON values always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an instance from a znode's data.
    ///
    /// # Errors
    /// [`crate::Error::Protocol`] when the data is not an instance's JSON.
    pub fn from_json(data: &[u8]) -> crate::Result<ServiceInstance> {
        serde_json::from_slice(data)
            .map_err(|e| crate::Error::Protocol(format!("not a service instance: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_curators_json_and_writes_the_same_fields() {
        let curator = br#"{"name":"test","id":"a1","address":"10.0.0.1","port":1234,"sslPort":null,"payload":{"zone":"a"},"registrationTimeUTC":1325129459728,"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]},"enabled":true,"future":1}"#;
        let i = ServiceInstance::from_json(curator).unwrap();
        assert_eq!(i.name, "test");
        assert_eq!(i.port, Some(1234));
        assert_eq!(i.service_type, ServiceType::Dynamic);
        assert_eq!(i.uri().as_deref(), Some("http://10.0.0.1:1234"));
        assert_eq!(i.extra.get("future"), Some(&serde_json::json!(1)));
        let back: serde_json::Value = serde_json::from_slice(&i.to_json()).unwrap();
        let orig: serde_json::Value = serde_json::from_slice(curator).unwrap();
        assert_eq!(back, orig, "every field round-trips");
        // Without `enabled` (Curator before 4) it is enabled.
        let old = br#"{"name":"n","id":"i","address":null,"port":null,"sslPort":null,"payload":null,"registrationTimeUTC":0,"serviceType":"STATIC","uriSpec":null}"#;
        assert!(ServiceInstance::from_json(old).unwrap().enabled);
        assert!(ServiceInstance::from_json(b"{}").is_err());
    }

    #[test]
    fn uri_specs() {
        let spec = UriSpec::parse("{scheme}://{address}:{port}/x");
        assert_eq!(spec.parts.len(), 6);
        let i = ServiceInstance::new("s")
            .with_address("h", 80)
            .with_ssl_port(443)
            .with_uri_spec("{scheme}://{address}:{ssl-port}/x");
        assert_eq!(i.uri().as_deref(), Some("https://h:443/x"));
    }
}
