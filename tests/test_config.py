import pickle
from decimal import Decimal

import pytest

from workbench.config import (
    MAINNET_CONSENT,
    MAINNET_ENV,
    Config,
    Credentials,
    MainnetGuard,
    RiskLimits,
    Secret,
    TradingMode,
    load_config,
    resolve_mode,
)
from workbench.errors import ConfigError, MainnetGuardError

GUARD = {MAINNET_ENV: MAINNET_CONSENT}


def test_testnet_is_the_default():
    assert resolve_mode(Config(), {}) is TradingMode.TESTNET
    assert resolve_mode(load_config(), {}) is TradingMode.TESTNET


@pytest.mark.parametrize(
    "mainnet_flag, environ, missing",
    [
        (False, {}, ["`mainnet = true`", MAINNET_ENV]),
        (True, {}, [MAINNET_ENV]),
        (False, GUARD, ["`mainnet = true`"]),
        (True, {MAINNET_ENV: "yes"}, [MAINNET_ENV]),
    ],
)
def test_mainnet_needs_both_guards(mainnet_flag, environ, missing):
    config = Config(mode=TradingMode.MAINNET, mainnet=mainnet_flag)
    with pytest.raises(MainnetGuardError) as e:
        resolve_mode(config, environ)
    assert all(m in str(e.value) for m in missing) and "testnet" in str(e.value)


def test_mainnet_with_both_guards():
    assert resolve_mode(Config(mode=TradingMode.MAINNET, mainnet=True), GUARD) is TradingMode.MAINNET


def test_only_a_config_past_both_mainnet_guards_gets_a_mainnet_guard():
    """The token the Binance executor demands for mainnet: resolve_mode's verdict, nothing else."""
    assert isinstance(MainnetGuard(Config(mode=TradingMode.MAINNET, mainnet=True), GUARD), MainnetGuard)
    with pytest.raises(MainnetGuardError, match=f"needs the environment variable {MAINNET_ENV}"):
        MainnetGuard(Config(mode=TradingMode.MAINNET, mainnet=True), {})
    with pytest.raises(MainnetGuardError, match="only for a mainnet config; this one trades on testnet"):
        MainnetGuard(Config(mainnet=True), GUARD)


def test_mainnet_flag_alone_does_not_switch_modes():
    assert resolve_mode(Config(mainnet=True), GUARD) is TradingMode.TESTNET


def test_config_from_toml_with_overrides(tmp_path):
    path = tmp_path / "wb.toml"
    path.write_text(
        'mode = "Paper"\nsymbols = ["ETH/USDT"]\nstore_path = "x.duckdb"\nquote_balance = 500\n'
        '[risk]\nmax_order_notional = 250\nmax_open_orders = 3\nallowed_symbols = "ETH/USDT"\nprice_band_pct = 2.5\n'
    )
    config = load_config(path, venue_url="http://127.0.0.1:9000")
    assert config.mode is TradingMode.PAPER and config.symbols == ("ETH/USDT",)
    assert config.risk.max_order_notional == Decimal(250) and config.risk.max_open_orders == 3
    assert config.risk.allowed_symbols == ("ETH/USDT",) and config.risk.price_band_pct == Decimal("2.5")
    assert config.quote_balance == 500 and str(config.store_path) == "x.duckdb"
    assert config.venue_url == "http://127.0.0.1:9000"
    assert load_config(risk=RiskLimits(max_open_orders=1)).risk.max_open_orders == 1
    assert load_config(risk={"max_position": None}).risk.max_position is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("mode = 'moon'", "'mode' has a bad value"),
        ("mainnet = 'yes'", "must be true or false"),
        ("colour = 'red'", "Unknown config key(s) ['colour']"),
        ("[risk]\nmax_order_notional = -1", "must be a finite number >= 0"),
        ("[risk]\nmax_order_notional = 'nan'", "must be a finite number >= 0"),
        ("[risk]\nmax_open_orders = 'many'", "'max_open_orders' has a bad value"),
        ("[risk]\nbogus = 1", "Bad [risk] table"),
        ("mode = ", "not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/wb.toml")


KEY, SECRET = "TESTKEY-abcdef0123456789", "TESTSECRET-9876543210fedcba"


def test_credentials_come_from_the_environment_and_never_show():
    env = {"BINANCE_TESTNET_API_KEY": KEY, "BINANCE_TESTNET_API_SECRET": SECRET}
    creds = Credentials.from_env(TradingMode.TESTNET, env)
    assert creds.api_key.reveal() == KEY and creds.secret.reveal() == SECRET
    for text in (repr(creds), str(creds), f"{creds}", repr(creds.api_key), str(creds.secret)):
        assert KEY not in text and SECRET not in text and "***" in text
    assert creds.api_key == Secret(KEY) and hash(creds.api_key) == hash(Secret(KEY))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(creds)
    assert Credentials.from_env(TradingMode.MAINNET, env) is None
    assert Credentials.from_env(TradingMode.PAPER, env) is None


def test_half_set_credentials_name_the_missing_variable():
    with pytest.raises(ConfigError, match="BINANCE_API_SECRET is not set") as e:
        Credentials.from_env(TradingMode.MAINNET, {"BINANCE_API_KEY": KEY})
    assert KEY not in str(e.value)
    with pytest.raises(ConfigError, match="BINANCE_API_KEY is not set"):
        Credentials.from_env(TradingMode.MAINNET, {"BINANCE_API_SECRET": SECRET})


def test_modes_know_whether_they_are_real():
    assert not TradingMode.PAPER.is_real and TradingMode.TESTNET.is_real and TradingMode.MAINNET.is_real
