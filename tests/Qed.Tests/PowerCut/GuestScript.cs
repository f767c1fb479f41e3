namespace Qed.Tests.PowerCut;

/// <summary>Draws a workload's guest requests: sector-aligned writes and write-zeroes with flushes in between, each with its own id.</summary>
internal sealed class GuestScript
{
    private readonly List<GuestOp> _ops = [];
    private int _nextId;

    public GuestScript(int firstId = 1)
    {
        _nextId = firstId;
    }

    public IReadOnlyList<GuestOp> Ops => _ops;

    public GuestScript Write(long offset, long length) => Add(GuestOpKind.Write, offset, length);

    public GuestScript Zeroes(long offset, long length) => Add(GuestOpKind.WriteZeroes, offset, length);

    public GuestScript Flush() => Add(GuestOpKind.Flush, 0, 0);

    /// <summary>
    /// <paramref name="count"/> requests: a flush with probability <paramref name="flushes"/>, write-zeroes with probability
    /// <paramref name="zeroes"/>, else a write; offsets and lengths (sectors, at least one) drawn by the callers, clipped to the disk.
    /// </summary>
    public static IReadOnlyList<GuestOp> Draw(Random random, int count, long diskSize, Func<Random, long> offset, Func<Random, long> length, double zeroes, double flushes, int firstId = 1)
    {
        var script = new GuestScript(firstId);
        for (int i = 0; i < count; i++)
        {
            double draw = random.NextDouble();
            if (draw < flushes)
            {
                script.Flush();
                continue;
            }
            long start = offset(random) / 512 * 512;
            long bytes = Math.Max(512, length(random) / 512 * 512);
            bytes = Math.Min(bytes, diskSize - start);
            if (draw < flushes + zeroes)
            {
                script.Zeroes(start, bytes);
            }
            else
            {
                script.Write(start, bytes);
            }
        }
        return script.Ops;
    }

    private GuestScript Add(GuestOpKind kind, long offset, long length)
    {
        _ops.Add(new GuestOp(kind, offset, length, _nextId++));
        return this;
    }
}
