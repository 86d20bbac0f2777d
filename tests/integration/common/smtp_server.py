"""A real SMTP server on loopback for tests/integration/schedule.rs: aiosmtpd (from
PyPI, pinned in .ci/setup) requiring STARTTLS and a login before it takes
mail, writing every message it takes into OUTDIR as NNN.eml.

usage: smtp_server.py CERT KEY OUTDIR USER PASSWORD
Prints the port it listens on (127.0.0.1), then serves until killed.
"""
import asyncio
import os
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

cert, key, outdir, user, password = sys.argv[1:6]


class Keep:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(outdir) if f.endswith(".eml")])
        path = os.path.join(outdir, f"{n:03}.eml")
        with open(path + ".part", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".part", path)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    good = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    )
    # handled=False: aiosmtpd answers the failure itself (535), as a real
    # server does; handled=True would leave the client waiting.
    return AuthResult(success=good, handled=False)


tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
loop = asyncio.new_event_loop()
loop.run_until_complete(
    loop.create_server(
        lambda: SMTP(
            Keep(),
            hostname="localhost",
            tls_context=tls,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=True,
            loop=loop,
        ),
        sock=sock,
    )
)
print(sock.getsockname()[1], flush=True)
loop.run_forever()
