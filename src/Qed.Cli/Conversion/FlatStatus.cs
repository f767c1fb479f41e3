using Qed.IO;

namespace Qed.Cli.Conversion;

/// <summary>Allocation status of a whole backing chain, flattened: does an extent read as zeros or does it hold data somewhere?</summary>
internal static class FlatStatus
{
    /// <summary>Length of the extent at <paramref name="offset"/> (at most <paramref name="length"/>) and whether it certainly reads as zeros.</summary>
    /// <remarks>Zero clusters read as zeros; unallocated ranges fall through to the backing device, and read as zeros where there is none or past its end.</remarks>
    public static async ValueTask<(long Length, bool IsZero)> GetAsync(BlockDevice device, long offset, long length, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var status = await device.GetStatusAsync(offset, length, cancellationToken).ConfigureAwait(false);
            switch (status.State)
            {
                case BlockState.Data:
                    return (status.Length, false);
                case BlockState.Zero:
                    return (status.Length, true);
            }
            var backing = device.Backing;
            if (backing is null || offset >= backing.Size)
            {
                return (status.Length, true);
            }
            device = backing;
            length = Math.Min(status.Length, backing.Size - offset);
        }
    }

    /// <summary>
    /// Appends the extents of <c>[offset, offset+length)</c> to <paramref name="extents"/>, each marked zero (certainly reads
    /// as zeros, judged from metadata only) or data; returns true when every extent is zero.
    /// </summary>
    public static async ValueTask<bool> CollectAsync(BlockDevice device, long offset, long length, List<Extent> extents, CancellationToken cancellationToken = default)
    {
        bool allZero = true;
        long end = offset + length;
        while (offset < end)
        {
            (long Length, bool IsZero) status;
            try
            {
                status = await GetAsync(device, offset, end - offset, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                // qemu-img's wording, naming where the walk failed.
                throw new IOException($"error while reading block status at offset {offset}: {e.Message}", e);
            }
            if (extents.Count > 0 && extents[^1].IsZero == status.IsZero && extents[^1].End == offset)
            {
                extents[^1] = extents[^1] with { Length = extents[^1].Length + status.Length };
            }
            else
            {
                extents.Add(new Extent(offset, status.Length, status.IsZero));
            }
            allZero &= status.IsZero;
            offset += status.Length;
        }
        return allZero;
    }

    /// <summary>A range of the disk that either reads as zeros or holds data somewhere in the chain.</summary>
    public readonly record struct Extent(long Offset, long Length, bool IsZero)
    {
        /// <summary>The first byte after the extent.</summary>
        public long End => Offset + Length;
    }
}
