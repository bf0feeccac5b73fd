"""Provider lookup: names, keys from the environment or the org config, base URLs, pip hints."""

from __future__ import annotations

import sys

import pytest

from assay.errors import AssayError, MissingDependency
from assay.providers import PriceTable, Usage, assay_home, default_cache_path, get_provider, split_name


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "TOGETHER_API_KEY", "OPENAI_BASE_URL", "VLLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _org(home, text: str) -> None:
    (home / "providers.yaml").write_text(text)


def test_split_name():
    assert split_name("OpenAI/gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert split_name("together/meta-llama/Llama-3-8b") == ("together", "meta-llama/Llama-3-8b")
    for bad in ("gpt-4o", "/gpt", "openai/"):
        with pytest.raises(AssayError) as info:
            split_name(bad)
        assert "provider/model" in str(info.value)


def test_key_from_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    p = get_provider("openai/gpt-4o-mini", cache=False)
    assert p.api_key == "sk-env" and p.base_url == "https://api.openai.com/v1" and p.key_env == "OPENAI_API_KEY"


def test_key_from_org_config(_assay_home):
    _org(_assay_home, "providers:\n  openai: {api_key: sk-org}\n  anthropic: {api_key: ak-org}\n")
    assert get_provider("openai/gpt-4o-mini", cache=False).api_key == "sk-org"
    assert get_provider("anthropic/claude-3-5-haiku-latest", cache=False).api_key == "ak-org"


def test_environment_beats_org_config(_assay_home, monkeypatch):
    _org(_assay_home, "providers:\n  openai: {api_key: sk-org}\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert get_provider("openai/gpt-4o-mini", cache=False).api_key == "sk-env"
    monkeypatch.setenv("TEAM_KEY", "sk-team")
    p = get_provider("openai/gpt-4o-mini", cache=False, api_key_env="TEAM_KEY")
    assert p.api_key == "sk-team" and p.key_env == "TEAM_KEY"


def test_missing_key_names_the_variable():
    with pytest.raises(AssayError) as info:
        get_provider("openai/gpt-4o-mini", cache=False)
    assert info.value.code == "missing_key"
    assert "OPENAI_API_KEY" in str(info.value) and "providers.yaml" in str(info.value)
    with pytest.raises(AssayError) as info:
        get_provider("together/llama", cache=False, api_key_env="MY_TOGETHER")
    assert "MY_TOGETHER" in str(info.value)


def test_local_servers_need_no_key(monkeypatch):
    assert get_provider("ollama/llama3", cache=False).base_url == "http://127.0.0.1:11434/v1"
    assert get_provider("llamacpp/smollm2", cache=False).api_key is None
    # openai/ with a base_url of your own: no key needed either
    p = get_provider("openai/local", base_url_="http://127.0.0.1:8080/v1/", cache=False)
    assert p.base_url == "http://127.0.0.1:8080/v1" and p.api_key is None
    monkeypatch.setenv("VLLM_BASE_URL", "http://gpu-box:8000/v1")
    assert get_provider("vllm/qwen", cache=False).base_url == "http://gpu-box:8000/v1"


def test_base_url_from_org_config(_assay_home):
    _org(_assay_home, "providers:\n  mygateway: {base_url: 'http://gw.internal/v1', api_key: k}\n")
    p = get_provider("mygateway/some-model", cache=False)
    assert p.base_url == "http://gw.internal/v1" and p.api_key == "k" and p.id == "mygateway/some-model"
    assert type(p).__name__ == "OpenAIProvider"


def test_unknown_provider_without_base_url():
    with pytest.raises(AssayError) as info:
        get_provider("nosuchprovider/model", cache=False)
    msg = str(info.value)
    assert "NOSUCHPROVIDER_BASE_URL" in msg and "openai" in msg and "anthropic" in msg
    assert info.value.code == "invalid_config"


def test_bad_org_config(_assay_home):
    _org(_assay_home, "providers: [unclosed\n")
    with pytest.raises(AssayError) as info:
        get_provider("openai/gpt-4o-mini", cache=False)
    assert "providers.yaml" in str(info.value) and "\n" not in str(info.value)


def test_missing_http_library_gives_a_pip_hint(monkeypatch):
    p = get_provider("vllm/qwen", cache=False, max_retries=0)
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx now fails
    with pytest.raises(MissingDependency) as info:
        p.generate("hi")
    assert "pip install 'assay[providers]'" in str(info.value) and "httpx" in str(info.value)


def test_cache_location(_assay_home, tmp_path):
    assert assay_home() == _assay_home and default_cache_path() == _assay_home / "cache.db"
    p = get_provider("mock/m")  # cache=True: $ASSAY_HOME/cache.db
    p.generate("hello")
    assert (_assay_home / "cache.db").exists() and p.cache.count() == 1
    assert get_provider("mock/m", cache=False).cache is None
    p2 = get_provider("mock/m", cache=tmp_path / "sub" / "c.db")
    p2.generate("hello")
    assert (tmp_path / "sub" / "c.db").exists()


def test_cache_schema_is_versioned(tmp_path):
    import sqlite3

    from assay.providers import open_cache
    from assay.providers._cache import MIGRATIONS

    open_cache(tmp_path / "c.db")
    db = sqlite3.connect(tmp_path / "c.db")
    versions = [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [v for v, _, _ in MIGRATIONS]
    cols = [r[1] for r in db.execute("PRAGMA table_info(requests)")]
    assert cols[:5] == ["key", "provider", "model", "request", "response"]


def test_price_table_globs_and_order():
    t = PriceTable({"openai/gpt-4o-mini-2024-07-18": (1, 1), "openai/*": {"input": 9, "output": 9}})
    assert t.price("openai/gpt-4o-mini-2024-07-18") == (1.0, 1.0)  # exact first
    assert t.price("openai/gpt-4o-mini") == (9.0, 9.0)  # a user glob before the defaults
    assert PriceTable().price("openai/gpt-4o-mini") == (0.15, 0.60)
    assert PriceTable().price("anthropic/claude-sonnet-4-20250514") == (3.0, 15.0)
    assert PriceTable().price("custom/model") is None
    assert PriceTable().cost("custom/model", Usage(10, 10)) is None
    assert PriceTable().cost("mock/x", Usage(10, 10)) == 0.0
