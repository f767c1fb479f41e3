using System.Buffers;
using Qed.Tables;

namespace Qed.Image;

// The two ways write-zeroes makes guest clusters read as zeros without allocating them: real zeros for partial
// clusters, zero-cluster entries for unallocated clusters over a backing file.
public sealed partial class QedImage
{
    /// <summary>Writes real zeros through the normal write path (partial clusters).</summary>
    private async ValueTask WriteZeroBytesAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        int chunk = (int)Math.Min(length, CombinedWriteLimit);
        byte[] zeros = ArrayPool<byte>.Shared.Rent(chunk);
        try
        {
            Array.Clear(zeros, 0, chunk);
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(chunk, length - done);
                await WriteCoreAsync(zeros.AsMemory(0, n), offset + done, useAsync, cancellationToken).ConfigureAwait(false);
                done += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    /// <summary>Turns the unallocated clusters of a whole-cluster range into zero clusters; returns the bytes handled.</summary>
    private async ValueTask<long> MarkZeroClustersAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        var stripe = _space.StripeFor(offset);
        await stripe.Gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        var slices = stripe.Slices;
        try
        {
            int wanted = (int)(Math.Min(length, _map.RoomInTable(offset)) >> _geometry.ClusterBits);
            ulong tableOffset = _map.ValidatedTableOffset(offset);
            int count = wanted;
            if (tableOffset != 0)
            {
                count = (await _map.CollectRunAsync(tableOffset, offset, wanted, unallocatedOnly: true, slices, useAsync, cancellationToken).ConfigureAwait(false)).Count;
                if (count == 0)
                {
                    // Allocated or zero meanwhile: let the caller look again.
                    return 0;
                }
            }
            await _tables.SetEntriesAsync(tableOffset, slices, offset, count, TableEntry.Zero, 0, useAsync, cancellationToken).ConfigureAwait(false);
            return (long)count << _geometry.ClusterBits;
        }
        finally
        {
            _map.ReleaseAll(slices);
            stripe.Gate.Exit();
        }
    }
}
