/*
 * channel-close-epoch.pml: the close rule across an epoch change, for the spin model checker.
 * Companion of channel-close.pml (read its header first: the same abstractions apply here).
 * tools/check-model runs both variants; one by hand:
 *   spin -a [-DEPOCH_FREEZE] channel-close-epoch.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan
 *
 * THE INVARIANT, asserted after every step: once the replica has applied a close (in the new epoch),
 *   (1) every claim certified in either epoch has amount <= paid: claims acked by a quorum of the
 *       old committee must be covered by a close the new committee certifies;
 *   (2) paid <= the highest promise the consumer signed;  (3) paid + refunded == deposit.
 *
 * WHAT IS MODELLED
 * - Epoch e: committee of honest 0, 1, 2 and one byzantine member. Epoch e+1: honest 2, 3, 4 and
 *   one byzantine member. Validator 2 is the one honest member in both.
 * - The provider lodges two claims in epoch e and one in epoch e+1; the consumer's promises grow to
 *   D = 3 as in channel-close.pml; the close is asked for in epoch e+1 (a close within one epoch is
 *   channel-close.pml's).
 * - An epoch change entry, certified by the old committee (3 of its 4 votes). Validators of the new
 *   committee vote in epoch e+1 only once it is certified (they must have applied it to be members);
 *   the replica applies epoch e+1 entries only after it (LedgerState: unknownEpoch otherwise).
 * - Close votes in epoch e+1 report the voter's highest acked claim on the channel (for validator 2,
 *   its acks of both epochs: Validator.ackedClaims outlives the epoch), under the fixed report rule
 *   (a faulty report is at most a real promise).
 *
 * THE RULE, TWO WAYS
 * - Default: the rule as the code has it. The epoch change carries nothing about channels. An old
 *   member acks epoch-e claims until it applies the epoch change, at a time of its own (here: any
 *   time). Replicas apply an epoch-e claim certificate whenever it arrives, before or after the
 *   close. A new member's report is max(its acked claims, its replica's claimed); here the certified
 *   epoch-e claims have not reached the new members yet when they vote (gossip is not ordered across
 *   accounts), so their replicas' claimed is 0. Expected: (1) fails.
 * - -DEPOCH_FREEZE, a candidate fix: the epoch change entry names, for the channel, the claimed
 *   amount it carries into epoch e+1 (a real promise, or 0: what "the epoch change fixes each
 *   account's height and head" comes to for a channel). An honest old member votes for it only if
 *   that covers every claim it acked, and acks no epoch-e claim after that vote (the close rule,
 *   applied to the epoch's end). Applying the epoch change raises claimed to the carried amount, so
 *   new members report at least it. Expected: (1)-(3) hold.
 */

#define D 3

byte promised;
byte amount[3];          /* claims 0, 1: epoch e; claim 2: epoch e+1. 0 = not lodged */
byte acks[3];            /* bit i: honest validator i acked claim c (0..2 for epoch e, 2..4 for e+1) */
byte ecVotes;            /* bit i: old honest member i voted for the epoch change */
byte carried;            /* -DEPOCH_FREEZE: the amount the epoch change entry names, plus 1; 0 = none yet */
bool ecApplied;          /* the replica applied the epoch change */
byte closeVotes;         /* bit i: new honest member i voted close */
byte claimed;            /* the replica's channel.claimed */
bool closed;
byte paid;
byte refunded;

#define BIT(m, i) (((m) >> (i)) & 1)
#define ONE(b) ((b) -> 1 : 0)
#define MAX(a, b) ((a) > (b) -> (a) : (b))
#define OLD(c) ((c) < 2)
#define EC_CERTIFIED (ONE(BIT(ecVotes, 0)) + ONE(BIT(ecVotes, 1)) + ONE(BIT(ecVotes, 2)) >= 2)
#define CERTIFIED(c) (amount[c] > 0 && \
    (OLD(c) -> ONE(BIT(acks[c], 0)) + ONE(BIT(acks[c], 1)) + ONE(BIT(acks[c], 2)) \
             : ONE(BIT(acks[c], 2)) + ONE(BIT(acks[c], 3)) + ONE(BIT(acks[c], 4))) >= 2)

#define ACKED_AMOUNT(c, i) (BIT(acks[c], i) -> amount[c] : 0)
#define OLD_ACKED_MAX(i) MAX(ACKED_AMOUNT(0, i), ACKED_AMOUNT(1, i))
/* validator i's highest acked claim, both epochs */
#define ACKED_MAX(i) MAX(OLD_ACKED_MAX(i), ACKED_AMOUNT(2, i))

#ifdef EPOCH_FREEZE
#define FLOOR (carried > 0 -> carried - 1 : 0)
/* an old member acks epoch-e claims only until it votes for the epoch change */
#define MAY_ACK_OLD(i) (!BIT(ecVotes, i) && !BIT(closeVotes, i))
#define MAY_VOTE_EC(i) (carried > 0 && OLD_ACKED_MAX(i) <= carried - 1)
#else
#define FLOOR 0
/* no claim after a close vote (Validator.closeVotes outlives the epoch, as ackedClaims does) */
#define MAY_ACK_OLD(i) (!BIT(closeVotes, i))
#define MAY_VOTE_EC(i) true
#endif

/* a new member's close report: its acked claims, and what its replica carried over the epoch change */
#define REPORT(i) MAX(ACKED_MAX(i), FLOOR)

/* as channel-close.pml's CAN_CERTIFY, over the new committee's honest members 2, 3, 4 */
#define AT_MOST(i, t) ONE(BIT(closeVotes, i) && REPORT(i) <= (t))
#define EXACTLY(i, t) (BIT(closeVotes, i) && REPORT(i) == (t))
#define CAN_CERTIFY(t) \
    (AT_MOST(2, t) + AT_MOST(3, t) + AT_MOST(4, t) >= 2 && \
     ((t) <= promised || EXACTLY(2, t) || EXACTLY(3, t) || EXACTLY(4, t)))
#define SETTLE(t) (MAX(claimed, t) < D -> MAX(claimed, t) : D)

#define COVERED(c) (!closed || !CERTIFIED(c) || amount[c] <= paid)
inline check() {
    assert(COVERED(0) && COVERED(1) && COVERED(2));   /* (1) */
    assert(!closed || paid <= promised);              /* (2) */
    assert(!closed || paid + refunded == D)           /* (3) */
}

/* The steps. Each is atomic, and its guard is tested before it starts. */

/* the provider lodges claim c, carrying a promise it holds (epoch e+1 claims after the change) */
#define LODGE(c, a) \
    :: atomic { amount[c] == 0 && (c == 0 || amount[c - 1] != 0) && (OLD(c) || EC_CERTIFIED) && \
                a <= promised -> amount[c] = a; check() }
#define LODGE_ANY(c) LODGE(c, 1) LODGE(c, 2) LODGE(c, 3)

/* old member i acks epoch-e claim c */
#define ACK_OLD(i, c) \
    :: atomic { amount[c] > 0 && !BIT(acks[c], i) && MAY_ACK_OLD(i) -> acks[c] = acks[c] | (1 << (i)); check() }

/* new member i acks the epoch e+1 claim, unless it voted close */
#define ACK_NEW(i) \
    :: atomic { amount[2] > 0 && !BIT(acks[2], i) && !BIT(closeVotes, i) -> acks[2] = acks[2] | (1 << (i)); check() }

/* old member i votes for the epoch change */
#define VOTE_EC(i) \
    :: atomic { !BIT(ecVotes, i) && MAY_VOTE_EC(i) -> ecVotes = ecVotes | (1 << (i)); check() }

/* new member i votes close in epoch e+1 */
#define VOTE_CLOSE(i) \
    :: atomic { EC_CERTIFIED && !BIT(closeVotes, i) -> closeVotes = closeVotes | (1 << (i)); check() }

/* the replica applies certified claim c (an epoch-e one at any time; nothing once closed) */
#define APPLY_CLAIM(c) \
    :: atomic { CERTIFIED(c) && (OLD(c) || ecApplied) && !closed && amount[c] > claimed -> \
                claimed = amount[c]; check() }

/* the replica applies a close certificate of epoch e+1 whose highest report is t */
#define APPLY_CLOSE(t) \
    :: atomic { ecApplied && !closed && CAN_CERTIFY(t) -> \
                paid = SETTLE(t); refunded = D - paid; closed = true; check() }

init {
end:
    do
    :: atomic { promised < D -> promised++; check() }
    LODGE_ANY(0) LODGE_ANY(1) LODGE_ANY(2)
    ACK_OLD(0, 0) ACK_OLD(1, 0) ACK_OLD(2, 0)
    ACK_OLD(0, 1) ACK_OLD(1, 1) ACK_OLD(2, 1)
    ACK_NEW(2) ACK_NEW(3) ACK_NEW(4)
#ifdef EPOCH_FREEZE
    /* whoever makes the epoch change entry names an amount it can show a promise for, or 0 */
    :: atomic { carried == 0 -> if :: carried = 1 :: promised >= 1 -> carried = 2
                                   :: promised >= 2 -> carried = 3 :: promised >= 3 -> carried = 4 fi; check() }
#endif
    VOTE_EC(0) VOTE_EC(1) VOTE_EC(2)
    /* the replica applies the certified epoch change (and the amount it carries) */
    :: atomic { EC_CERTIFIED && !ecApplied -> ecApplied = true;
                if :: !closed && FLOOR > claimed -> claimed = FLOOR :: else -> skip fi; check() }
    VOTE_CLOSE(2) VOTE_CLOSE(3) VOTE_CLOSE(4)
    APPLY_CLAIM(0) APPLY_CLAIM(1) APPLY_CLAIM(2)
    APPLY_CLOSE(0) APPLY_CLOSE(1) APPLY_CLOSE(2) APPLY_CLOSE(3)
    od
}
