"""AWS STS for the end-to-end tests: moto's server, wrapped so that it answers like STS does for EKS tokens.

moto routes a presigned GET (credentials in the query, no Authorization header) to S3 and does not read the
caller from the query. This wrapper:
- sends such requests to moto's STS backend, adding `AWSAccessKeyId=<key>` (which moto reads the caller from)
  and `ContentType=JSON` when the client asks for JSON, as aws-iam-authenticator does;
- checks the ExternalId of AssumeRole calls against `--external-id ROLE_ARN=ID` rules (moto does not);
- remembers the secret of every credential AssumeRole issues and tells it at `GET /kubeauth-test/secret/<key>`,
  so that the test's token verifier can check SigV4 signatures, as real STS does.
moto does not verify presigned signatures or their age: the verifier in kubeauth-testkit does.

Usage: python moto_sts.py --port PORT [--external-id ROLE_ARN=ID ...]
"""

import argparse
import io
import re
import threading
import urllib.parse

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

ERROR = (
    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
    "<Code>AccessDenied</Code><Message>{}</Message></Error><RequestId>kubeauth-test</RequestId></ErrorResponse>"
)


class StsForEks:
    def __init__(self, external_ids):
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.sts = None
        self.external_ids = external_ids
        self.secrets = {}
        self.lock = threading.Lock()

    def sts_app(self):
        with self.lock:
            if self.sts is None:
                self.sts = create_backend_app("sts")
            return self.sts

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if path.startswith("/kubeauth-test/secret/"):
            secret = self.secrets.get(path.rsplit("/", 1)[1])
            status = "200 OK" if secret else "404 Not Found"
            start_response(status, [("Content-Type", "text/plain")])
            return [(secret or "").encode()]
        if "X-Amz-Credential" in query and "HTTP_AUTHORIZATION" not in environ:
            key = query["X-Amz-Credential"][0].split("/")[0]
            extra = {"AWSAccessKeyId": key}
            if "application/json" in environ.get("HTTP_ACCEPT", ""):
                extra["ContentType"] = "JSON"
            environ["QUERY_STRING"] += "&" + urllib.parse.urlencode(extra)
            return self.sts_app()(environ, start_response)

        body = b""
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if form.get("Action") == ["AssumeRole"]:
            role = form.get("RoleArn", [""])[0]
            wanted = self.external_ids.get(role)
            if wanted is not None and form.get("ExternalId", [None])[0] != wanted:
                message = f"User is not authorized to perform: sts:AssumeRole on resource: {role} (external id)"
                payload = ERROR.format(message).encode()
                start_response("403 Forbidden", [("Content-Type", "text/xml"), ("Content-Length", str(len(payload)))])
                return [payload]
            captured = {}

            def capture(status, headers, exc_info=None):
                captured["status"] = status
                return start_response(status, headers, exc_info)

            chunks = list(self.moto(environ, capture))
            text = b"".join(chunks).decode("utf-8", "replace")
            key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", text)
            secret = re.search(r"<SecretAccessKey>([^<]+)</SecretAccessKey>", text)
            if key and secret:
                self.secrets[key.group(1)] = secret.group(1)
            return chunks
        return self.moto(environ, start_response)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--external-id", action="append", default=[])
    args = parser.parse_args()
    external_ids = dict(rule.split("=", 1) for rule in args.external_id)
    run_simple("127.0.0.1", args.port, StsForEks(external_ids), threaded=True)


if __name__ == "__main__":
    main()
