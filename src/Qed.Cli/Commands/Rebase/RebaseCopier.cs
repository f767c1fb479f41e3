using System.Buffers;
using Qed.Extents;
using Qed.IO;

namespace Qed.Cli.Commands.Rebase;

/// <summary>
/// The data half of a safe rebase: before the header names the new backing file, copies into the overlay what the old
/// chain shows and the new backing file does not, so the disk reads the same afterwards.
/// </summary>
/// <remarks>
/// The walk is qemu-img 7.2's, so the overlay ends up allocated as qemu-img leaves it (same clusters, same file layout):
/// <list type="number">
/// <item>Take the next chunk of at most 2 MiB and cut it to the run the overlay's own layer answers alike. Data and zero
/// clusters of the overlay are kept (they do not depend on any backing file; a zero cluster stays zero, iotest 050).</item>
/// <item>Cut the chunk at the end of the old backing file and at the end of the new one (sizes as qemu counts them, whole
/// sectors), so each side is either read or known to be zeros past its end.</item>
/// <item>Where both sides are known from their metadata to read as zeros, go on without reading.</item>
/// <item>Otherwise read both and compare them 512 bytes at a time; each run of differing sectors is written into the
/// overlay: the old bytes, or write-zeroes past the old backing file's end (whole clusters become zero clusters). A
/// partial cluster is completed from the old chain by the overlay's copy-on-write.</item>
/// </list>
/// Everything is flushed before the caller changes the header: a crash before that leaves the overlay reading the same
/// over its old backing file (the clusters written hold what it showed there already).
/// </remarks>
internal sealed class RebaseCopier
{
    /// <summary>qemu-img's rebase buffer, which bounds each step.</summary>
    private const int ChunkSize = 2 * 1024 * 1024;
    private const int SectorSize = 512;

    private readonly BlockDevice _overlay;
    private readonly BlockDevice? _old;
    private readonly BlockDevice? _new;
    private readonly long _oldSize;
    private readonly long _newSize;

    /// <summary>A copier for <paramref name="overlay"/> (open writable over its old chain) moving onto <paramref name="newBacking"/> (null: none).</summary>
    public RebaseCopier(BlockDevice overlay, BlockDevice? newBacking)
    {
        _overlay = overlay;
        _old = overlay.Backing;
        _new = newBacking;
        _oldSize = _old is null ? 0 : ImageOpener.VirtualSize(_old);
        _newSize = _new is null ? 0 : ImageOpener.VirtualSize(_new);
    }

    /// <summary>Bytes of the overlay's disk written (data or zeros), for tests and reports.</summary>
    public long BytesWritten { get; private set; }

    /// <summary>Chunks whose contents were read and compared (the rest was skipped from metadata).</summary>
    public long ChunksCompared { get; private set; }

    /// <summary>Runs steps 1 to 4 over the whole disk and flushes; <paramref name="progress"/> gets (done, total) after each chunk.</summary>
    public void Copy(Action<long, long> progress)
    {
        long size = _overlay.Size;
        byte[] oldBuffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
        byte[] newBuffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            for (long offset = 0, n; offset < size; offset += n)
            {
                // Step 1.
                var own = _overlay.GetStatus(offset, Math.Min(ChunkSize, size - offset));
                n = own.Length;
                if (own.State == BlockState.Unallocated)
                {
                    // Step 2.
                    bool oldIsZero = offset >= _oldSize;
                    if (!oldIsZero)
                    {
                        n = Math.Min(n, _oldSize - offset);
                    }
                    if (_new is not null && offset < _newSize)
                    {
                        n = Math.Min(n, _newSize - offset);
                    }
                    // Step 3, then 4.
                    if (!(ReadsAsZeros(_old, offset, n) && ReadsAsZeros(_new, offset, n)))
                    {
                        CompareAndWrite(offset, (int)n, oldBuffer, newBuffer, oldIsZero);
                    }
                }
                progress(offset + n, size);
            }
            _overlay.Flush();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(oldBuffer);
            ArrayPool<byte>.Shared.Return(newBuffer);
        }
    }

    private void CompareAndWrite(long offset, int n, byte[] oldBuffer, byte[] newBuffer, bool oldIsZero)
    {
        ChunksCompared++;
        var oldBytes = oldBuffer.AsMemory(0, n);
        var newBytes = newBuffer.AsMemory(0, n);
        Read(_old, oldBytes, offset);
        Read(_new, newBytes, offset);
        for (int done = 0; done < n;)
        {
            int run = DifferingRun(oldBytes.Span[done..], newBytes.Span[done..], out bool differs);
            if (differs)
            {
                if (oldIsZero)
                {
                    _overlay.WriteZeroes(offset + done, run);
                }
                else
                {
                    _overlay.Write(oldBytes.Slice(done, run), offset + done);
                }
                BytesWritten += run;
            }
            done += run;
        }
    }

    /// <summary>The length of the run of sectors at the start that all differ, or all match (<paramref name="differs"/>).</summary>
    private static int DifferingRun(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, out bool differs)
    {
        int first = Math.Min(a.Length, SectorSize);
        differs = !a[..first].SequenceEqual(b[..first]);
        int i = first;
        while (i < a.Length)
        {
            int len = Math.Min(a.Length - i, SectorSize);
            if (!a.Slice(i, len).SequenceEqual(b.Slice(i, len)) != differs)
            {
                break;
            }
            i += len;
        }
        return i;
    }

    /// <summary>What a backing device shows at <paramref name="offset"/>: zeros where there is none or past its end.</summary>
    private static void Read(BlockDevice? device, Memory<byte> destination, long offset)
    {
        int readable = device is null ? 0 : (int)Math.Clamp(device.Size - offset, 0, destination.Length);
        if (readable > 0)
        {
            device!.Read(destination[..readable], offset);
        }
        destination.Span[readable..].Clear();
    }

    /// <summary>True when the metadata alone says the range of a backing device (none: zeros) reads as zeros.</summary>
    private static bool ReadsAsZeros(BlockDevice? device, long offset, long length)
    {
        long readable = device is null ? 0 : Math.Clamp(device.Size - offset, 0, length);
        for (long at = offset, end = offset + readable; at < end;)
        {
            var extent = ExtentMap.GetExtent(device!, at, end - at);
            if (!extent.ReadsAsZeros)
            {
                return false;
            }
            at = extent.End;
        }
        return true;
    }
}
