namespace Qed.CrashWriter;

/// <summary>The deterministic sequence of steps for one seed: the writer runs it, the verifier regenerates it.</summary>
public static class CrashPlan
{
    /// <summary>Step <paramref name="count"/> steps for an image of <paramref name="size"/> bytes with clusters of <paramref name="clusterSize"/> bytes.</summary>
    public static IEnumerable<CrashOp> Generate(int seed, long size, int clusterSize, int count)
    {
        var random = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            int roll = random.Next(100);
            if (roll < 8)
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
            var kind = roll < 15 ? CrashOpKind.WriteZeroes : CrashOpKind.Write;
            yield return new CrashOp(kind, offset, length, random.Next());
        }
    }
}
