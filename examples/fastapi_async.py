"""FastAPI with AsyncWallet: wallet calls never block the server's event loop.

The wallet opens in the app's lifespan (inside the running loop), each request awaits the
agent's handle, and a policy denial becomes a 403 carrying the compact JSON error a model
or a client can act on. Run it for real with ``uvicorn fastapi_async:app``; here the app is
exercised with FastAPI's TestClient. Needs ``pip install fastapi 'waiaas[local]'``.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel

from waiaas import AsyncWallet, WaiaasError
from waiaas.testing import TEST_PASSWORD, fast_config, local_chains
from waiaas.tools import error_payload

SOL = 10**9
SHOP = "So11111111111111111111111111111111111111112"
WALLET_DIR = Path(tempfile.mkdtemp())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # chains=local_chains (the function): the in-process chains are built in the pool too
    app.state.wallet = await AsyncWallet.open(
        WALLET_DIR / "wallet.db", password=TEST_PASSWORD, chains=local_chains, config=fast_config()
    )
    yield
    await app.state.wallet.close()


app = FastAPI(lifespan=lifespan)


class Payment(BaseModel):
    to: str
    amount: str  # whole units, a decimal string: "0.05"
    asset: str = "native"


@app.exception_handler(WaiaasError)
async def refused(request: Request, exc: WaiaasError) -> JSONResponse:
    return JSONResponse(error_payload(exc), status_code=403)


@app.post("/pay")
async def pay(payment: Payment, authorization: str = Header()) -> dict[str, object]:
    handle = await app.state.wallet.agent(authorization.removeprefix("Bearer "))
    tx = await handle.transfer(payment.to, payment.amount, payment.asset)
    return {"id": tx.id, "status": tx.status.value, "tier": tx.tier.value if tx.tier else None}


@app.get("/balance")
async def balance(authorization: str = Header()) -> dict[str, str]:
    handle = await app.state.wallet.agent(authorization.removeprefix("Bearer "))
    return {"balance": (await handle.balance()).display}


if __name__ == "__main__":
    with TestClient(app) as client:
        wallet: AsyncWallet = app.state.wallet
        agent = client.portal.call(wallet.create_agent, "api-agent", "solana")  # type: ignore[union-attr]
        chain = wallet.sync.network_adapter("solana", "localnet")
        chain.fund(agent.public_key, SOL)  # type: ignore[attr-defined]
        client.portal.call(  # type: ignore[union-attr]
            lambda: wallet.add_policy(
                "SPENDING_LIMIT", {"per_transaction": str(SOL // 10)}, agent_id=agent.id
            )
        )
        issued = client.portal.call(wallet.issue_session, agent.id)  # type: ignore[union-attr]
        auth = {"Authorization": f"Bearer {issued.token}"}
        print("GET /balance:", client.get("/balance", headers=auth).json())
        ok = client.post("/pay", json={"to": SHOP, "amount": "0.05"}, headers=auth)
        print("POST /pay 0.05:", ok.status_code, ok.json()["status"])
        no = client.post("/pay", json={"to": SHOP, "amount": "0.5"}, headers=auth)
        print("POST /pay 0.5:", no.status_code, no.json()["error"]["message"])
        bad = client.get("/balance", headers={"Authorization": "Bearer nope"})
        print("bad token:", bad.status_code, bad.json()["error"]["code"])
    print("fastapi example finished")
