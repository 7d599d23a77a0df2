//! The EKS bearer token: a presigned STS `GetCallerIdentity` URL.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;

use crate::region::sts_host;

/// The prefix of every EKS token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// How long the presigned URL is valid, as `aws eks get-token` signs it.
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// How long EKS accepts a token after it was made (the verifier's 15 minutes, less a minute of clock skew), as
/// `aws eks get-token` reports it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// An EKS token for `cluster_id` made at `time` with `credentials`, signed for the regional STS endpoint of
/// `region`: `k8s-aws-v1.` + unpadded base64url of
/// `https://sts.<region>.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-…`, with the
/// `x-k8s-aws-id` header signed, `X-Amz-Expires=60`, and the session token when the credentials have one — the
/// request `aws eks get-token` presigns.
pub fn eks_token(
    credentials: &Credentials,
    region: &str,
    cluster_id: &str,
    time: SystemTime,
) -> Result<String, String> {
    let host = sts_host(region);
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let headers = [("host", host.as_str()), ("x-k8s-aws-id", cluster_id)];
    let signable = SignableRequest::new("GET", url.as_str(), headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("cannot sign the STS request: {e}"))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|e| format!("cannot sign the STS request: {e}"))?.into_parts();
    let mut request = http::Request::get(&url).body(()).map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(token: &str) -> String {
        let b64 = token.strip_prefix(TOKEN_PREFIX).unwrap();
        assert!(!b64.contains('='), "no padding");
        String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn the_token_is_a_presigned_get_caller_identity_url() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let url = decode(&eks_token(&creds, "eu-west-1", "my-cluster", SystemTime::now()).unwrap());
        assert!(
            url.starts_with("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert!(!url.contains("X-Amz-Security-Token"));
    }

    #[test]
    fn session_credentials_carry_their_token() {
        let creds = Credentials::new("ASIAEXAMPLE", "secret", Some("session/token+1".into()), None, "test");
        let url = decode(&eks_token(&creds, "us-east-1", "c", SystemTime::now()).unwrap());
        assert!(url.contains("X-Amz-Security-Token=session%2Ftoken%2B1"), "{url}");
    }
}
