"""The rate limits' schedule of starts, kept in Redis and shared by every worker: the times of
the starts each limit allowed, past ones and ones reserved ahead.

A start that may not run now is given the first time it may, and that slot is reserved for it
at once. A backlog is so laid out over the windows ahead in one pass: each put-off node is
woken for its own slot and runs then. Asking again at every window's end instead (what a
limiter that only answers "now or not" allows) has every waiter race for a rate's worth of
starts, and each one refused again loses a whole wake cycle: a 5/s limit then ran under 4/s.

Each limit keeps the times of its last `amount` starts, newest first. A new start goes no
earlier than the newest of them (so the times stay in order), nor earlier than the oldest of
them plus the window and its margin: no window of the rate's length, wherever it is put, holds
more than `amount` starts. One Lua script reads and appends across all the limits of a node,
so two workers racing for the last start of a window cannot both get it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from spane_cli.workflow.limits import RateLimit

KEY_PREFIX = "spane:limits"
# A reservation outlives its slot by this much: a node woken late (a busy worker, a Redis
# restart) still finds it, and a node that never comes back (cancelled) leaves nothing for long.
RESERVATION_GRACE_SECONDS = 600

# KEYS: each limit's list of start times, then the run's reservation.
# ARGV: now, how soon counts as now, the run's limits (amount, span: window plus margin)...,
# how late a reserved slot may still be taken, the reservation's grace.
# Returns the start's time and the limit that set it (0 when none did; 1-based).
_TAKE = """
local now = tonumber(ARGV[1])
local soon = tonumber(ARGV[2])
local count = #KEYS - 1
local reservation = KEYS[#KEYS]
local late = tonumber(ARGV[#ARGV - 1])
local held = redis.call('get', reservation)
if held then
  local at, binding = string.match(held, '^([^|]+)|(%d+)$')
  if tonumber(at) > now + soon then
    return {at, binding}
  end
  redis.call('del', reservation)
  if tonumber(at) >= now - late then
    return {at, binding}
  end
end
local at = now
local binding = 0
for i = 1, count do
  local amount = tonumber(ARGV[1 + 2 * i])
  local span = tonumber(ARGV[2 + 2 * i])
  local newest = redis.call('lindex', KEYS[i], 0)
  if newest and tonumber(newest) > at then
    at = tonumber(newest)
    binding = i
  end
  local oldest = redis.call('lindex', KEYS[i], amount - 1)
  if oldest and tonumber(oldest) + span > at then
    at = tonumber(oldest) + span
    binding = i
  end
end
local text = string.format('%.6f', at)
for i = 1, count do
  local amount = tonumber(ARGV[1 + 2 * i])
  local span = tonumber(ARGV[2 + 2 * i])
  redis.call('lpush', KEYS[i], text)
  redis.call('ltrim', KEYS[i], 0, amount - 1)
  redis.call('pexpire', KEYS[i], math.ceil((at - now + span) * 1000) + 1000)
end
if at > now + soon then
  local grace = tonumber(ARGV[#ARGV])
  redis.call('set', reservation, text .. '|' .. binding, 'PX', math.ceil((at - now + grace) * 1000))
end
return {text, tostring(binding)}
"""

# The starts a rate allows are spaced by its window plus this share of it (at most
# MARGIN_SECONDS): a node's own record of its start comes a little after its slot (the claim,
# a process started, a wake a little late), and a late start of one window must not crowd
# into the next one's.
MARGIN_SHARE = 0.15
MARGIN_SECONDS = 0.15


def margin(limit: RateLimit) -> float:
    return min(limit.rate.per * MARGIN_SHARE, MARGIN_SECONDS)


@dataclass(frozen=True)
class Slot:
    """When a start may be, and the limit that put it off (None: no limit did)."""

    at: float
    binding: RateLimit | None


class StartSchedule:
    def __init__(self, connection: Redis) -> None:
        self._take = connection.register_script(_TAKE)

    def take(self, limits: Sequence[RateLimit], run_key: str, now: float, soon: float) -> Slot:
        """The run's start: the slot reserved for it earlier (given up once it is at most
        `soon` ahead), else a new one in every limit, reserved when more than `soon` ahead.

        A reserved slot missed by more than the smallest margin (every worker was down at
        its time) is a new start: taken late, slots missed together would start together."""
        keys = [_starts_key(limit) for limit in limits]
        keys.append(f"{KEY_PREFIX}:reserved:{run_key}")
        args: list[str | int] = [repr(now), repr(soon)]
        for limit in limits:
            args += [limit.rate.amount, repr(limit.rate.per + margin(limit))]
        args.append(repr(min(margin(limit) for limit in limits)))
        args.append(RESERVATION_GRACE_SECONDS)
        at, binding = self._take(keys=keys, args=args)
        index = int(binding)
        # A reservation outlives a workflow's new version: a limit it no longer has is no reason.
        reason = limits[index - 1] if 0 < index <= len(limits) else None
        return Slot(float(at), reason)


def _starts_key(limit: RateLimit) -> str:
    # Two files declaring one key with different rates keep a schedule each, as they would
    # keep a limiter each.
    return f"{KEY_PREFIX}:starts:{limit.bucket}:{limit.rate.amount}/{limit.rate.per}"
