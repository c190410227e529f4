"""The forwarding guard's map: where each envelope recipient's alias expansion leads."""

from __future__ import annotations

from mailstack.render.forwarding import (
    forwarding_entries,
    held_address,
    held_alias_entries,
    render_forwarding_map,
)

D = "example.com"


def test_a_mailbox_forwarding_without_a_copy_is_refused_and_with_one_held() -> None:
    entries = [
        ("alice@example.com", ("alice@example.com",)),
        ("bob@example.com", ("bob@example.com", "bob@example.net")),
        ("carol@example.com", ("carol@example.net",)),
    ]
    assert forwarding_entries(entries, D) == [
        ("bob+not-forwarded@example.com", "local"),
        ("bob@example.com", "bob+not-forwarded@example.com"),
        ("carol@example.com", "refuse"),
    ]
    assert held_alias_entries(entries, D) == [
        ("bob+not-forwarded@example.com", ("bob+not-forwarded@example.com",))
    ]


def test_aliases_are_followed_through_mailboxes_that_forward() -> None:
    # sales reaches alice (local) and bob (forwards, keeps a copy); team only carol (no copy);
    # dave forwards to bob, whose own forward then leads outside.
    entries = [
        ("alice@example.com", ("alice@example.com",)),
        ("bob@example.com", ("bob@example.com", "bob@example.net")),
        ("carol@example.com", ("carol@example.net",)),
        ("dave@example.com", ("bob@example.com",)),
        ("sales@example.com", ("alice@example.com", "bob@example.com")),
        ("team@example.com", ("carol@example.com",)),
        ("loop@example.com", ("loop2@example.com",)),
        ("loop2@example.com", ("loop@example.com",)),
    ]
    verdicts = dict(forwarding_entries(entries, D))
    assert verdicts["sales@example.com"] == (
        "alice+not-forwarded@example.com,bob+not-forwarded@example.com"
    )
    assert verdicts["team@example.com"] == "refuse"
    assert verdicts["dave@example.com"] == "bob+not-forwarded@example.com"
    assert "alice@example.com" not in verdicts and "loop@example.com" not in verdicts
    # Every held address is delivered locally, and has its own alias entry.
    held = {a for a, _ in held_alias_entries(entries, D)}
    assert held == {"alice+not-forwarded@example.com", "bob+not-forwarded@example.com"}
    assert all(verdicts[a] == "local" for a in held)


def test_a_catch_all_outside_lists_every_address() -> None:
    entries = [
        ("alice@example.com", ("alice@example.com",)),
        ("@example.com", ("someone@example.org",)),
    ]
    assert forwarding_entries(entries, D) == [
        ("@example.com", "refuse"),
        ("alice@example.com", "local"),
    ]
    # A local catch-all adds nothing.
    local = [entries[0], ("@example.com", ("alice@example.com",))]
    assert forwarding_entries(local, D) == []


def test_the_map_is_key_value_lines() -> None:
    entries = [("carol@example.com", ("carol@example.net",))]
    lines = render_forwarding_map(entries, D).splitlines()
    assert lines[-1] == "carol@example.com refuse"
    assert all(line.startswith("#") for line in lines[:-1])
    assert held_address("bob@example.com") == "bob+not-forwarded@example.com"
