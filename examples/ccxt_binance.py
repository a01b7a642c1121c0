#!/usr/bin/env python3
"""ccxt's unmodified `binance` class against tradestack's Binance-compatible API.

Only the API URLs change. Two accounts trade with each other: the maker rests
a sell, the taker buys part of it; both then see their trades and balances.

    pip install ccxt
    tradestack up            # with the accounts of examples/tradestack-ccxt.toml
    python3 examples/ccxt_binance.py --url http://127.0.0.1:8600

Exits 0 when every step behaved as expected, 1 otherwise.
"""

import argparse
import sys
from urllib.parse import urlsplit

import ccxt


def client(url, key, secret):
    ex = ccxt.binance({"apiKey": key, "secret": secret})
    base = url.rstrip("/")
    for name, address in list(ex.urls["api"].items()):
        # Same paths, our host: https://api.binance.com/api/v3 -> {base}/api/v3
        ex.urls["api"][name] = base + urlsplit(address).path
    return ex


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8600")
    p.add_argument("--maker-key", default="maker-key")
    p.add_argument("--maker-secret", default="maker-secret")
    p.add_argument("--taker-key", default="taker-key")
    p.add_argument("--taker-secret", default="taker-secret")
    args = p.parse_args()

    maker = client(args.url, args.maker_key, args.maker_secret)
    taker = client(args.url, args.taker_key, args.taker_secret)

    markets = maker.load_markets()
    check("BTC/USDT" in markets, f"markets loaded: {sorted(markets)}")
    m = markets["BTC/USDT"]
    check(m["spot"] and m["active"], "BTC/USDT is an active spot market")
    taker.load_markets()

    ask = maker.create_order("BTC/USDT", "limit", "sell", 0.5, 50000)
    check(ask["status"] == "open", f"maker's limit sell rests: id {ask['id']}")
    far = maker.create_order("BTC/USDT", "limit", "sell", 0.1, 60000)

    book = taker.fetch_order_book("BTC/USDT")
    check(book["asks"][0][:2] == [50000.0, 0.5], f"book best ask {book['asks'][0]}")

    bid = taker.create_order("BTC/USDT", "limit", "buy", 0.2, 50010)
    check(bid["status"] == "closed" and bid["filled"] == 0.2, "taker's buy filled at once")
    check(bid["average"] == 50000.0, "filled at the maker's price")

    fetched = maker.fetch_order(ask["id"], "BTC/USDT")
    check(fetched["filled"] == 0.2 and fetched["remaining"] == 0.3, "maker sees its partial fill")

    open_orders = maker.fetch_open_orders("BTC/USDT")
    check(sorted(o["id"] for o in open_orders) == sorted([ask["id"], far["id"]]), "open orders listed")

    cancelled = maker.cancel_order(far["id"], "BTC/USDT")
    check(cancelled["status"] == "canceled", "cancel")
    check(maker.fetch_order(far["id"], "BTC/USDT")["status"] == "canceled", "cancelled order queried")

    trades = taker.fetch_my_trades("BTC/USDT")
    check(len(trades) == 1 and trades[0]["amount"] == 0.2 and trades[0]["side"] == "buy", "taker's trade")
    mtrades = maker.fetch_my_trades("BTC/USDT")
    check(len(mtrades) == 1 and mtrades[0]["takerOrMaker"] == "maker", "maker's trade")

    bal = taker.fetch_balance()
    check(abs(bal["BTC"]["total"] - 10.2) < 1e-9, f"taker's BTC balance {bal['BTC']}")
    mbal = maker.fetch_balance()
    check(abs(mbal["BTC"]["used"] - 0.3) < 1e-9, f"maker's BTC locked by its open order {mbal['BTC']}")

    try:
        taker.create_order("BTC/USDT", "limit", "buy", 0.00002, 49000)
        check(False, "an order below the minimum notional is rejected")
    except (ccxt.InvalidOrder, ccxt.BadRequest) as e:
        check(True, f"an order below the minimum notional is rejected: {e}")
    try:
        taker.create_order("BTC/USDT", "limit", "buy", 1000, 50000)
        check(False, "an order without funds is rejected")
    except ccxt.InsufficientFunds:
        check(True, "an order without funds is rejected")
    print("all ccxt checks passed")


if __name__ == "__main__":
    main()
