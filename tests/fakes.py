"""Small fake HTTP services on 127.0.0.1 for the real clients to talk to, and credentials for them."""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN = "fake-access-token"


class FakeServer:
    """Routes ``(METHOD, path regex) -> handler(request) -> (status, json body)``; logs every request.

    A handler gets a dict: method, path, query (dict of lists), headers (lower-case names), body (parsed JSON or None),
    match (the regex match). It may also return (status, body, headers), or None to close the connection
    without an answer (a lost response).
    """

    def __init__(self):
        self.routes = []
        self.requests = []
        self.route("POST", r"/token", lambda r: (200, {"access_token": TOKEN, "expires_in": 3600,
                                                       "token_type": "Bearer"}))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                request = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                           "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "raw": raw}
                server.requests.append(request)
                for method, pattern, handler in reversed(server.routes):
                    match = re.fullmatch(pattern, url.path)
                    if method == self.command and match:
                        request["match"] = match
                        result = handler(request)
                        break
                else:
                    result = (404, {"error": {"code": 404, "message": "no route for %s %s" % (self.command, url.path),
                                              "status": "NOT_FOUND"}})
                if result is None:
                    self.close_connection = True
                    return
                status, payload = result[0], result[1]
                headers = result[2] if len(result) > 2 else {}
                raw_answer = isinstance(payload, bytes)
                data = payload if raw_answer else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw_answer else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def route(self, method, pattern, handler):
        """Add a route; later routes win over earlier ones."""
        self.routes.append((method, pattern, handler))

    def calls(self, method=None, path_pattern=None):
        return [r for r in self.requests
                if (method is None or r["method"] == method)
                and (path_pattern is None or re.fullmatch(path_pattern, r["path"]))]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *args):
        self.httpd.shutdown()
        self.httpd.server_close()


def write_service_account(path, token_uri, project="test-project"):
    """A service-account key file (with a fresh RSA key) whose token endpoint is ``token_uri``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {
        "type": "service_account", "project_id": project, "private_key_id": "test-key",
        "private_key": pem, "client_email": "tester@%s.iam.gserviceaccount.com" % project,
        "client_id": "1", "token_uri": token_uri,
    }
    with open(path, "w") as f:
        json.dump(info, f)
    return path


class FakeGcs:
    """The part of Cloud Storage's JSON API a lock needs (insert, get, download, delete), with
    object generations and ``ifGenerationMatch`` honoured as Google documents them (HTTP 412 when the
    precondition fails; generation 0 means "no such object"). gcp-storage-emulator ignores them."""

    def __init__(self, server):
        self.server, self.objects, self.next_generation = server, {}, 1000
        self.lock = threading.Lock()
        server.route("POST", r"/upload/storage/v1/b/([^/]+)/o", self.insert)
        server.route("GET", r"/storage/v1/b/([^/]+)/o/(.+)", self.get)
        server.route("GET", r"/download/storage/v1/b/([^/]+)/o/(.+)", self.download)
        server.route("DELETE", r"/storage/v1/b/([^/]+)/o/(.+)", self.delete)

    def client(self, project="test-project"):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project=project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.server.url})

    def _failed(self, request, key):
        wanted = request["query"].get("ifGenerationMatch")
        if wanted is None:
            return False
        current = self.objects[key]["generation"] if key in self.objects else 0
        return int(wanted[0]) != current

    def _resource(self, key):
        item = self.objects[key]
        return {"bucket": key[0], "name": key[1], "generation": str(item["generation"]), "metageneration": "1",
                "size": str(len(item["data"])), "contentType": "application/octet-stream"}

    def insert(self, request):
        boundary = re.search(r'boundary="?([^";]+)"?', request["headers"]["content-type"]).group(1).encode()
        parts = [p for p in request["raw"].split(b"--" + boundary) if p.strip() not in (b"", b"--")]
        metadata = json.loads(parts[0].split(b"\r\n\r\n", 1)[1].strip())
        data = parts[1].split(b"\r\n\r\n", 1)[1][:-2]      # the part ends with CRLF
        key = (request["match"].group(1), metadata["name"])
        with self.lock:
            if self._failed(request, key):
                return 412, {"error": {"code": 412, "message": "conditionNotMet"}}
            self.next_generation += 1
            self.objects[key] = {"data": data, "generation": self.next_generation}
            return 200, self._resource(key)

    def _key(self, request):
        from urllib.parse import unquote
        return request["match"].group(1), unquote(request["match"].group(2))

    def _existing(self, request):
        """``(key, None)`` for an object the request may touch, or ``(key, error answer)``."""
        key = self._key(request)
        if key not in self.objects:
            return key, (404, {"error": {"code": 404, "message": "No such object"}})
        if self._failed(request, key):
            return key, (412, {"error": {"code": 412, "message": "conditionNotMet"}})
        return key, None

    def get(self, request):
        with self.lock:
            key, refused = self._existing(request)
            return refused or (200, self._resource(key))

    def download(self, request):
        with self.lock:
            key, refused = self._existing(request)
            return refused or (200, self.objects[key]["data"],
                               {"x-goog-generation": str(self.objects[key]["generation"])})

    def delete(self, request):
        with self.lock:
            key, refused = self._existing(request)
            if refused:
                return refused
            del self.objects[key]
            return 200, {}
