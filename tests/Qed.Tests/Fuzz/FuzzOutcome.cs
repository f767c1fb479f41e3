using Qed.Check;

namespace Qed.Tests.Fuzz;

/// <summary>
/// What the harness saw on one mutant: a failure (anything but success or our own error), which steps ended in our own
/// error, and what the repair and the last check reported. The fingerprint condenses it with fixed arithmetic, so two
/// runs with one seed can be compared by a single number.
/// </summary>
internal sealed record FuzzOutcome(string? Failure, bool OpenedReadOnly, bool OpenedWritable, int RefusedSteps, CheckResult? Repair, CheckResult? LastCheck)
{
    /// <summary>A fixed 64-bit digest of everything above but the failure text.</summary>
    public ulong Fingerprint
    {
        get
        {
            ulong h = Mix(0, (OpenedReadOnly ? 1UL : 0) | (OpenedWritable ? 2UL : 0) | (ulong)RefusedSteps << 2);
            foreach (var result in new[] { Repair, LastCheck })
            {
                h = result is null ? Mix(h, ulong.MaxValue) : Mix(Mix(Mix(Mix(Mix(Mix(h,
                    (ulong)result.Corruptions), (ulong)result.CorruptionsFixed), (ulong)result.Leaks), (ulong)result.LeaksFixed),
                    (ulong)result.AllocatedClusters), (ulong)result.CheckErrors);
            }
            return h;
        }
    }

    /// <summary>One SplitMix64 step over (state, value).</summary>
    public static ulong Mix(ulong state, ulong value)
    {
        ulong z = state ^ value + 0x9E3779B97F4A7C15UL + (state << 6) + (state >> 2);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
