/*
 * channel-close.pml: the channel claim/close rule of the ledger (DESIGN §6 Channels; protocol §15.4,
 * §15.7; Sources/Ledger/Validator.swift and LedgerState.swift), for the spin model checker.
 * tools/check-model runs every variant below; one by hand:
 *   spin -a [-D...] channel-close.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan
 *
 * THE INVARIANT, asserted after every step: once a replica has applied a close with settlement
 * (paid, refunded),
 *   (1) every claim acked by a quorum (certified) has amount <= paid: the close rule;
 *   (2) paid <= the highest promise the consumer signed: nobody is paid what was not promised
 *       (without (2), settling the whole deposit every time would pass (1));
 *   (3) paid + refunded == deposit.
 * With -DSECOND_REPLICA or -DTWO_CLOSES a second replica applies a close too, and
 *   (4) both replicas settle the same amount (else the ledger forks on the channel's balances).
 *
 * VARIANTS (the fixed rule is the default; tools/check-model says which are expected to fail)
 *   (none)                 the rule with the pending fix: a close report carries the promise it
 *                          rests on, so a faulty member reports at most a real promise. Holds.
 *   -DUNCHECKED_REPORTS    the rule in the code today: a report is a bare number. Breaks (2).
 *   -DACK_AFTER_CLOSE      a mutant: validators ack claims after their close vote. Breaks (1); it
 *                          shows the check can fail.
 *   -DSECOND_REPLICA       a second replica gets another certificate for the same close entry
 *                          (other votes, or another report signed by the faulty member: two votes
 *                          for one entry are not double-vote evidence). Breaks (4).
 *   -DTWO_CLOSES           consumer and provider both close; a replica applies whichever it gets
 *                          first; honest validators vote for both, as the code lets them. Breaks (4).
 *   -DSETTLE_IN_ENTRY      a candidate fix for (4): the close entry names the amount it settles
 *                          (resting on a promise, or 0) and an honest validator votes for it only if
 *                          that covers every claim it acked; the certificate's reports no longer
 *                          count. With -DSECOND_REPLICA it holds; with -DTWO_CLOSES it needs
 *   -DONE_CLOSE_PER_CHANNEL  as well: an honest validator votes for one close entry per channel.
 *
 * WHAT IS MODELLED
 * - One channel, deposit D = 3, four validators of equal stake: 0, 1, 2 honest, the fourth
 *   byzantine; a certificate needs 3 votes (3·signed > 2·total).
 * - The consumer signs cumulative promises: `promised` only grows, up to D.
 * - The provider lodges up to K = 3 claim entries, each carrying a promise it holds (1..promised).
 * - Honest validator i acks claim c unless it voted close (Validator.checkRequest: channelClosing);
 *   its close vote reports the highest claim it acked (.channelClose; the lock record's report).
 * - A replica applies certified claims (claimed = max(claimed, amount); nothing once closed) and one
 *   certified close: paid = min(deposit, max(claimed, highest report)), refunded = deposit - paid,
 *   as LedgerState.execute does; a second certificate for a closed channel changes nothing.
 * - The byzantine validator acks every claim and signs close votes with any report it likes: one
 *   carrying a real promise (<= promised), or any number with -DUNCHECKED_REPORTS.
 *
 * WHAT IS ABSTRACTED, AND WHY THAT IS SOUND (each abstraction only adds behaviours, so an invariant
 * that holds here holds for the code's runs within these bounds)
 * - Messages, loss, delay, reordering and crashes: a step is one party doing one thing, in any
 *   order; a lost message is a step never taken. Persist-before-vote (threat model) makes a
 *   restarted validator behave like one that never crashed, so crashes add nothing.
 * - The byzantine acks are always there: claim c is certified once 2 honest validators acked it
 *   (3 votes); a certificate of 3 honest acks has 2 of them as well.
 * - A close certificate is any 3 or more close votes, chosen by whoever assembles it (CAN_CERTIFY
 *   gives exactly the highest reports such a set can have, without enumerating the sets).
 * - Claims are independent entries: the height order on the provider's chain (an honest validator
 *   acks height h only after applying h-1), one entry per slot, and the balance, signature and
 *   expiry checks are dropped. Dropping a refusal only adds runs.
 * - Time: expiry or a release only decides when a close may be asked for, and nothing in the claim
 *   rule reads time, so here a close may be asked for at any point.
 * - An honest report in the code is max(acked claims, its replica's claimed); here it is the acked
 *   maximum alone. (1) and (2) are monotone in honest reports ((1) wants paid high; claimed is a
 *   certified promise, so (2) holds for it), so the lower report is the harder case. Under
 *   -DSETTLE_IN_ENTRY a report only decides whether the validator votes (it must be covered), so a
 *   lower report lets it vote more often: more runs. The runs that break (4) are realisable as they
 *   stand: in them no claim is certified before the close, so the replicas' claimed is 0 anyway.
 * - Bounds: one channel (channels do not interact); n = 4, f = 1, the smallest committee with a
 *   faulty member (the argument is quorum intersection, the same for any n > 3f and any stake
 *   weights, but this is a check of these bounds, not a proof for every n); amounts 0..3; 3 claims,
 *   enough to ack a lower claim after a higher one and to certify claims on both sides of a close.
 */

#define D 3              /* deposit */
#ifndef K
#define K 3              /* claim entries the provider lodges: 1..3 */
#endif
#if defined(TWO_CLOSES) && !defined(SECOND_REPLICA)
#define SECOND_REPLICA
#endif

byte promised;           /* highest promise the consumer signed */
byte amount[3];          /* claim c's promise amount; 0 = not lodged (only the first K are) */
byte acks[3];            /* bit i: honest validator i acked claim c */
byte closeVotes;         /* bit i: honest validator i voted for the (first) close entry */
byte claimed;            /* the replica's channel.claimed */
bool closed;             /* the replica applied a close */
byte paid;
byte refunded;
#ifdef SECOND_REPLICA
bool closed2;            /* the second replica applied a close */
byte paid2;
#endif
#ifdef TWO_CLOSES
byte closeVotes2;        /* bit i: honest validator i voted for the other party's close entry */
#define CLOSE2 closeVotes2
#else
#define CLOSE2 0
#endif
#ifdef SETTLE_IN_ENTRY
byte settles;            /* the amount the (first) close entry names, plus 1; 0 = not made yet */
byte settles2;           /* the same for the other party's close entry */
#endif
byte c;                  /* scratch; every step leaves it 0, so it adds no states */

#define ACKED(c, i) ((acks[c] >> (i)) & 1)
#define VOTED(m, i) (((m) >> (i)) & 1)
#define ONE(b) ((b) -> 1 : 0)
#define MAX(a, b) ((a) > (b) -> (a) : (b))
#define CERTIFIED(c) (amount[c] > 0 && ONE(ACKED(c, 0)) + ONE(ACKED(c, 1)) + ONE(ACKED(c, 2)) >= 2)

/* honest validator i's close report: the highest claim it acked (it acks none after voting close) */
#define ACKED_AMOUNT(c, i) (ACKED(c, i) -> amount[c] : 0)
#define REPORT(i) MAX(ACKED_AMOUNT(0, i), MAX(ACKED_AMOUNT(1, i), ACKED_AMOUNT(2, i)))

/* the reports the byzantine validator can sign: a real promise under the fixed rule; with
   -DUNCHECKED_REPORTS any number (above D the settlement clamps it to D, as t = D does) */
#ifdef UNCHECKED_REPORTS
#define BYZANTINE_CAN_REPORT(t) ((t) <= D)
#else
#define BYZANTINE_CAN_REPORT(t) ((t) <= promised)
#endif

/*
 * Whether a close certificate over the honest votes in `votes` can have highest report t. A
 * certificate is 3 or more votes with at most one byzantine, so at least 2 honest ones, all
 * reporting at most t, and its highest report is some member's. Conversely, 2 honest votes
 * reporting at most t, one of them exactly t, plus a byzantine vote reporting 0 (or 2 such honest
 * votes plus a byzantine vote reporting t) are a certificate whose highest report is t.
 */
#define AT_MOST(votes, i, t) ONE(VOTED(votes, i) && REPORT(i) <= (t))
#define EXACTLY(votes, i, t) (VOTED(votes, i) && REPORT(i) == (t))
#define CAN_CERTIFY(votes, t) \
    (AT_MOST(votes, 0, t) + AT_MOST(votes, 1, t) + AT_MOST(votes, 2, t) >= 2 && \
     (BYZANTINE_CAN_REPORT(t) || EXACTLY(votes, 0, t) || EXACTLY(votes, 1, t) || EXACTLY(votes, 2, t)))
#define QUORUM(votes) (ONE(VOTED(votes, 0)) + ONE(VOTED(votes, 1)) + ONE(VOTED(votes, 2)) >= 2)

/* paid = min(deposit, max(claimed, t)), as LedgerState.execute (.channelClose) */
#define SETTLE(t) (MAX(claimed, t) < D -> MAX(claimed, t) : D)

/* whether honest validator i may ack a claim: not after its close vote. -DACK_AFTER_CLOSE drops
   that refusal (a mutant). */
#ifdef ACK_AFTER_CLOSE
#define MAY_ACK(i) true
#else
#define MAY_ACK(i) (!VOTED(closeVotes, i) && !VOTED(CLOSE2, i))
#endif

/* whether honest validator i may vote for a close entry named by `mine` while it voted for the
   one in `other`: the code lets it vote for every close entry and checks nothing of its own */
#ifdef ONE_CLOSE_PER_CHANNEL
#define MAY_CLOSE_ONCE(i, other) (!VOTED(other, i))
#else
#define MAY_CLOSE_ONCE(i, other) true
#endif
#ifdef SETTLE_IN_ENTRY
#define COVERS(mine, i) ((mine) > 0 && REPORT(i) <= (mine) - 1)
#else
#define COVERS(mine, i) true
#endif

/* the invariant, asserted after every step */
#define COVERED(c) (!closed || !CERTIFIED(c) || amount[c] <= paid)
#ifdef SECOND_REPLICA
#define COVERED2(c) (!closed2 || !CERTIFIED(c) || amount[c] <= paid2)
#else
#define COVERED2(c) true
#endif
inline check() {
    assert(COVERED(0) && COVERED(1) && COVERED(2) && COVERED2(0) && COVERED2(1) && COVERED2(2)); /* (1) */
    assert(!closed || paid <= promised);                                                         /* (2) */
    assert(!closed || paid + refunded == D);                                                     /* (3) */
#ifdef SECOND_REPLICA
    assert(!closed2 || paid2 <= promised);                                                       /* (2) */
    assert(!closed || !closed2 || paid == paid2);                                                /* (4) */
#endif
}

/* The steps. Each is atomic, and its guard is tested before it starts. */

/* honest validator i acks claim c */
#define ACK(i, c) \
    :: atomic { amount[c] > 0 && !ACKED(c, i) && MAY_ACK(i) -> acks[c] = acks[c] | (1 << (i)); check() }

/* honest validator i votes for the (first) close entry */
#define VOTE_CLOSE(i) \
    :: atomic { !VOTED(closeVotes, i) && MAY_CLOSE_ONCE(i, CLOSE2) && COVERS(SETTLES, i) -> \
                closeVotes = closeVotes | (1 << (i)); check() }

/* the replica applies certified claim c */
#define APPLY_CLAIM(c) \
    :: atomic { CERTIFIED(c) && !closed && amount[c] > claimed -> claimed = amount[c]; check() }

/* the replica applies a certificate for the (first) close entry whose highest report is t; under
   -DSETTLE_IN_ENTRY the entry's own amount counts instead of the reports */
#ifdef SETTLE_IN_ENTRY
#define SETTLE_IN_ENTRY_ON 1
#define SETTLES settles
#else
#define SETTLE_IN_ENTRY_ON 0
#define SETTLES 1
#endif
#define APPLY_CLOSE(t) \
    :: atomic { !closed && \
                (SETTLES > 0 && t == 0 && QUORUM(closeVotes) && SETTLE_IN_ENTRY_ON || \
                 !SETTLE_IN_ENTRY_ON && CAN_CERTIFY(closeVotes, t)) -> \
                paid = (SETTLE_IN_ENTRY_ON -> SETTLE(SETTLES - 1) : SETTLE(t)); refunded = D - paid; \
                closed = true; check() }
/*
 * The second replica. It is given the first replica's claimed: whenever (1) holds, every certified
 * claim is at most every certificate's highest report (and, under -DSETTLE_IN_ENTRY, the entry's
 * amount), so claimed does not change what a close settles.
 */
#ifdef SECOND_REPLICA
#define APPLY_CLOSE2(votes, mine, t) \
    :: atomic { !closed2 && \
                (mine > 0 && t == 0 && QUORUM(votes) && SETTLE_IN_ENTRY_ON || \
                 !SETTLE_IN_ENTRY_ON && CAN_CERTIFY(votes, t)) -> \
                paid2 = (SETTLE_IN_ENTRY_ON -> SETTLE(mine - 1) : SETTLE(t)); closed2 = true; check() }
#endif

#ifdef TWO_CLOSES
#ifdef SETTLE_IN_ENTRY
#define SETTLES2 settles2
#else
#define SETTLES2 1
#endif
/* honest validator i votes for the other party's close entry */
#define VOTE_CLOSE2(i) \
    :: atomic { !VOTED(closeVotes2, i) && MAY_CLOSE_ONCE(i, closeVotes) && COVERS(SETTLES2, i) -> \
                closeVotes2 = closeVotes2 | (1 << (i)); check() }
#endif

#ifdef SETTLE_IN_ENTRY
/* a party makes its close entry, naming an amount it holds a promise for (or 0) */
#define MAKE_CLOSE(s) \
    :: atomic { s == 0 -> \
                if :: s = 1 :: promised >= 1 -> s = 2 :: promised >= 2 -> s = 3 :: promised >= 3 -> s = 4 fi; \
                check() }
#endif

init {
end:
    do
    /* the consumer signs a higher cumulative promise */
    :: atomic { promised < D -> promised++; check() }

    /* the provider lodges its next claim, carrying a promise it holds */
    :: atomic {
        promised > 0 && amount[K - 1] == 0 ->
        do :: amount[c] != 0 -> c++ :: else -> break od;
        if
        :: amount[c] = 1
        :: promised >= 2 -> amount[c] = 2
        :: promised >= 3 -> amount[c] = 3
        fi;
        c = 0;
        check()
       }

    ACK(0, 0) ACK(1, 0) ACK(2, 0)
    ACK(0, 1) ACK(1, 1) ACK(2, 1)
    ACK(0, 2) ACK(1, 2) ACK(2, 2)
    VOTE_CLOSE(0) VOTE_CLOSE(1) VOTE_CLOSE(2)
    APPLY_CLAIM(0) APPLY_CLAIM(1) APPLY_CLAIM(2)
    APPLY_CLOSE(0) APPLY_CLOSE(1) APPLY_CLOSE(2) APPLY_CLOSE(3)
#ifdef SETTLE_IN_ENTRY
    MAKE_CLOSE(settles)
#endif
#if defined(SECOND_REPLICA) && !defined(TWO_CLOSES)
    APPLY_CLOSE2(closeVotes, SETTLES, 0) APPLY_CLOSE2(closeVotes, SETTLES, 1)
    APPLY_CLOSE2(closeVotes, SETTLES, 2) APPLY_CLOSE2(closeVotes, SETTLES, 3)
#endif
#ifdef TWO_CLOSES
    VOTE_CLOSE2(0) VOTE_CLOSE2(1) VOTE_CLOSE2(2)
    APPLY_CLOSE2(closeVotes2, SETTLES2, 0) APPLY_CLOSE2(closeVotes2, SETTLES2, 1)
    APPLY_CLOSE2(closeVotes2, SETTLES2, 2) APPLY_CLOSE2(closeVotes2, SETTLES2, 3)
#ifdef SETTLE_IN_ENTRY
    MAKE_CLOSE(settles2)
#endif
#endif
    od
}
