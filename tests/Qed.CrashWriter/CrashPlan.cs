namespace Qed.CrashWriter;

/// <summary>The deterministic sequences of steps for one seed: the writer runs them, the verifier regenerates them.</summary>
public static class CrashPlan
{
    /// <summary>Percent of steps that are flushes.</summary>
    private const int FlushPercent = 8;

    /// <summary>Percent of steps (flushes included) below which a write is a write-zeroes.</summary>
    private const int ZeroesPercent = 15;

    /// <summary>Step <paramref name="count"/> steps for an image of <paramref name="size"/> bytes with clusters of <paramref name="clusterSize"/> bytes, anywhere on the disk.</summary>
    public static IEnumerable<CrashOp> Generate(int seed, long size, int clusterSize, int count)
    {
        var random = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            int roll = random.Next(100);
            if (roll < FlushPercent)
            {
                yield return new CrashOp(CrashOpKind.Flush, 0, 0, 0);
                continue;
            }
            // Mostly small writes, some unaligned, some spanning clusters; in a range small enough to mix allocating and in-place writes.
            long offset = random.Next(3) == 0 ? random.NextInt64(size) : random.NextInt64(size / clusterSize) * clusterSize;
            int length = random.Next(4) switch
            {
                0 => random.Next(1, 512),
                1 => 4096,
                2 => clusterSize,
                _ => random.Next(1, 3 * clusterSize),
            };
            length = (int)Math.Min(length, size - offset);
            var kind = roll < ZeroesPercent ? CrashOpKind.WriteZeroes : CrashOpKind.Write;
            yield return new CrashOp(kind, offset, length, random.Next());
        }
    }

    /// <summary>
    /// The steps of thread <paramref name="thread"/> of <paramref name="threads"/>: the disk is cut into stripes of
    /// <paramref name="stripe"/> bytes dealt round-robin to the threads, and each thread writes only inside its own
    /// stripes. Threads never touch each other's bytes, so each byte's expected value follows from one thread's
    /// ordered steps; yet neighbouring stripes share L2 tables and, when a stripe is smaller than a cluster, clusters.
    /// </summary>
    public static IEnumerable<CrashOp> GenerateStriped(int seed, int thread, int threads, int stripe, long size, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(stripe);
        long stripes = size / stripe;
        long owned = (stripes - thread + threads - 1) / threads;
        if (owned <= 0)
        {
            throw new ArgumentException($"a {size}-byte disk has no {stripe}-byte stripe for thread {thread} of {threads}");
        }
        var random = new Random(unchecked(seed * 1_000_003 + thread));
        for (int i = 0; i < count; i++)
        {
            int roll = random.Next(100);
            if (roll < FlushPercent)
            {
                yield return new CrashOp(CrashOpKind.Flush, 0, 0, 0);
                continue;
            }
            long start = (random.NextInt64(owned) * threads + thread) * stripe;
            int within, length;
            switch (random.Next(4))
            {
                case 0:
                    within = 0;
                    length = stripe;
                    break;
                case 1:
                    within = random.Next(Math.Max(1, stripe / 4096)) * 4096;
                    length = 4096;
                    break;
                case 2:
                    within = random.Next(stripe);
                    length = random.Next(1, 512);
                    break;
                default:
                    within = random.Next(stripe);
                    length = random.Next(1, stripe + 1);
                    break;
            }
            length = Math.Min(length, stripe - within);
            var kind = roll < ZeroesPercent ? CrashOpKind.WriteZeroes : CrashOpKind.Write;
            yield return new CrashOp(kind, start + within, length, random.Next());
        }
    }
}
