using Qed.Format;
using Qed.Tables;

namespace Qed.Image;

/// <summary>
/// Where new clusters come from, and who may allocate under which L2 table.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>New space is taken from the end of the file: the allocation pointer starts at the file length as QEMU counts
/// it (rounded up to a 512-byte sector, then down to a cluster) and only grows, atomically, so a failed write only
/// leaks what it reserved and no two requests ever share a cluster.</item>
/// <item>Allocations take the gate of their L2 table's stripe (by L1 index): allocations under different tables run
/// concurrently, two under one table serialize and the second looks its run up again.</item>
/// <item>Each stripe owns a scratch list for the slices an allocation holds, so an allocating write allocates no list.</item>
/// <item>Clusters below the file length at open may hold bytes an earlier session left (a partial last cluster):
/// <see cref="IsStale"/> tells the writer to order their data before the entry that points at them.</item>
/// </list>
/// </remarks>
internal sealed class ClusterAllocator : IDisposable
{
    private const int StripeCount = 64;

    private readonly Stripe[] _stripes = Enumerable.Range(0, StripeCount).Select(_ => new Stripe()).ToArray();
    private readonly QedGeometry _geometry;
    private readonly string _fileName;
    private long _end;
    private long _staleEnd;

    public ClusterAllocator(QedGeometry geometry, string fileName, long fileLength)
    {
        _geometry = geometry;
        _fileName = fileName;
        _staleEnd = fileLength;
        _end = OffsetRules.FileSize(fileLength, geometry);
    }

    /// <summary>The current end of the allocated area.</summary>
    public long End => Volatile.Read(ref _end);

    /// <summary>Takes <paramref name="bytes"/> from the end of the file; the pointer never moves back, so a failed write only leaks.</summary>
    public long Reserve(long bytes)
    {
        long end = Interlocked.Add(ref _end, bytes);
        if (end < 0)
        {
            throw new QedException($"'{_fileName}' cannot grow past {long.MaxValue} bytes");
        }
        return end - bytes;
    }

    /// <summary>True when space reserved at <paramref name="offset"/> may still hold an earlier session's bytes.</summary>
    public bool IsStale(long offset) => offset < Volatile.Read(ref _staleEnd);

    /// <summary>Moves the pointer back after a repair truncated trailing leaks; every stripe must be held.</summary>
    public void TruncatedTo(long end)
    {
        Volatile.Write(ref _end, end);
        // A flush always follows the truncate before data lands there again (the header update of the repair, the
        // need-check bit or the backing flush of the next allocation), so the space past it reads as zeros like new space.
        Volatile.Write(ref _staleEnd, Math.Min(Volatile.Read(ref _staleEnd), end));
    }

    /// <summary>The stripe that serializes allocations under the L2 table mapping <paramref name="offset"/>.</summary>
    public Stripe StripeFor(long offset) => _stripes[_geometry.L1Index(offset) & (StripeCount - 1)];

    /// <summary>Takes every stripe: no allocation runs until <see cref="ExitAll"/>.</summary>
    public async ValueTask EnterAllAsync(bool useAsync, CancellationToken cancellationToken)
    {
        int entered = 0;
        try
        {
            for (; entered < _stripes.Length; entered++)
            {
                await _stripes[entered].Gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            // Canceled halfway: give back what was taken.
            for (int i = 0; i < entered; i++)
            {
                _stripes[i].Gate.Exit();
            }
            throw;
        }
    }

    /// <summary>Gives back every stripe taken by <see cref="EnterAllAsync"/>.</summary>
    public void ExitAll()
    {
        foreach (var stripe in _stripes)
        {
            stripe.Gate.Exit();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var stripe in _stripes)
        {
            stripe.Gate.Dispose();
        }
    }

    /// <summary>One allocation gate and the slice list its holder uses.</summary>
    internal sealed class Stripe
    {
        public AsyncGate Gate { get; } = new();

        /// <summary>Scratch list of the slices the gate's holder references; empty whenever the gate is free.</summary>
        public List<L2CacheEntry> Slices { get; } = new(2);
    }
}
