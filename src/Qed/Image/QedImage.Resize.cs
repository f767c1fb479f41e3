using Qed.Format;
using Qed.IO;

namespace Qed.Image;

// Resize: the size check, and growing (shrinking is in QedImage.Shrink.cs).
public sealed partial class QedImage
{
    /// <inheritdoc />
    /// <remarks>
    /// Any multiple of 512 bytes up to what the L1 table can address (<see cref="QedGeometry.MaxImageSize"/>). Resizes
    /// run one at a time. Growing, the new area reads as zeros even where the backing chain is longer than the old size
    /// (QEMU refuses that case). Write ordering of a grow:
    /// <list type="number">
    /// <item>Requests past the old size are still refused, so nothing else writes the new area meanwhile.</item>
    /// <item>Make the new area read as zeros in this layer (<see cref="ZeroGrownAreaAsync"/>): the partial cluster at the old
    /// end and every data cluster past it are zeroed in the file (they may hold what a copy-up or an earlier, larger size
    /// left there); unallocated clusters where the backing chain holds data become zero clusters, a partial one gets real
    /// zeros through the write path (its part below the old end copied up from the backing chain). Beyond the backing
    /// chain's end unallocated space already reads as zeros and nothing is written: growing to 64 TiB allocates nothing.</item>
    /// <item>Flush: zeros and entries are stable before the size that exposes them.</item>
    /// <item>Write the header with the new size and flush it; only then do requests see the new size.</item>
    /// </list>
    /// A crash before step 4 leaves the old size with some zero entries past it: invisible, and consistent.
    /// Shrinking: see <see cref="ShrinkAsync"/>.
    /// </remarks>
    protected internal override async ValueTask ResizeCoreAsync(long size, bool useAsync, CancellationToken cancellationToken)
    {
        var geometry = _geometry;
        if (size % 512 != 0 || size > geometry.MaxImageSize)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"A QED image with {geometry.ClusterSize}-byte clusters and {geometry.TableSize}-cluster tables holds a multiple of 512 bytes up to {geometry.MaxImageSize}.");
        }
        await _resizeGate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            long oldSize = Size;
            if (size > oldSize)
            {
                await GrowAsync(oldSize, size, useAsync, cancellationToken).ConfigureAwait(false);
            }
            else if (size < oldSize)
            {
                await ShrinkAsync(size, useAsync, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _resizeGate.Exit();
        }
    }

    /// <summary>Steps 2-4 of a grow (see <see cref="ResizeCoreAsync"/>).</summary>
    private async ValueTask GrowAsync(long oldSize, long newSize, bool useAsync, CancellationToken cancellationToken)
    {
        if (NamesBackingFile && _backing is null)
        {
            throw new QedBackingFileException($"'{FileName}' was opened without its backing file: growing it cannot tell where the new area would show backing data");
        }
        // Below this, an unallocated cluster would show the backing chain's data.
        long backingEnd = Math.Min(_backing?.Size ?? 0, newSize);
        await ZeroGrownAreaAsync(oldSize, newSize, backingEnd, useAsync, cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
        await _headerState.UpdateAsync(h => h with { ImageSize = (ulong)newSize }, useAsync, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Makes guest bytes from <paramref name="start"/> to the end of the cluster holding <paramref name="end"/> − 1 read as
    /// zeros in this layer; unallocated clusters need it only below <paramref name="backingEnd"/>.
    /// </summary>
    private async ValueTask ZeroGrownAreaAsync(long start, long end, long backingEnd, bool useAsync, CancellationToken cancellationToken)
    {
        long stop = _geometry.AlignUp(end);
        long offset = start;
        while (offset < stop)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int inCluster = _geometry.OffsetInCluster(offset);
            bool partial = inCluster != 0;
            var piece = await _map.MapAsync(offset, partial ? _geometry.ClusterSize - inCluster : stop - offset, useAsync, cancellationToken).ConfigureAwait(false);
            long done = piece.Length;
            if (piece.State == BlockState.Data)
            {
                // Whole clusters become holes (the mapping stays, so they read as zeros); the tail of a partial one is
                // overwritten, since the part below the old end stays visible.
                await _file.ZeroRangeAsync(piece.HostOffset, done, deallocate: !partial, useAsync, cancellationToken).ConfigureAwait(false);
            }
            else if (piece.State == BlockState.Unallocated && offset < backingEnd)
            {
                if (partial)
                {
                    await WriteZeroBytesAsync(offset, done, useAsync, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    // 0 when the run changed meanwhile: map it again.
                    done = await MarkZeroClustersAsync(offset, Math.Min(done, _geometry.AlignUp(backingEnd) - offset), useAsync, cancellationToken).ConfigureAwait(false);
                }
            }
            offset += done;
        }
    }
}
