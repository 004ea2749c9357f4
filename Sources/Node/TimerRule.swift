// The timer rule both shells follow (NodeRuntime's NodeDriver and NetSim): after every input, arm one
// timer at the node's `nextDeadline`; a deadline already due fires 1 ms from now, so a core that
// keeps reporting a past deadline cannot spin the loop or stall virtual time.

import UmbraCore

public enum TimerRule {
    /// The least delay before a deadline that is already due fires.
    public static let minimumDelay: Duration = .milliseconds(1)

    /// When the timer for `deadline` fires, at `now`.
    public static func fireTime(for deadline: Instant, now: Instant) -> Instant {
        deadline > now ? deadline : now + minimumDelay
    }
}
