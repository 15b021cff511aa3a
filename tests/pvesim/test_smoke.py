from tests.conftest import Control, token_client


def test_a_token_client_reads_the_version_over_verified_tls(sim):
    assert token_client(sim).version.get()["release"] == "9.1"


def test_the_control_api_advances_the_paused_clock(sim):
    control = Control(sim)
    before = control.get("clock")["now"]
    assert control.advance(60) == before + 60
