using System.Buffers;
using Qed.Extents;
using Qed.IO;

namespace Qed.Cli.Commands.Compare;

/// <summary>What a comparison found.</summary>
internal enum CompareOutcome
{
    /// <summary>The images read the same (the longer one reads as zeros past the shorter one's end).</summary>
    Identical,
    /// <summary>The images read differently from <see cref="CompareResult.Offset"/> on.</summary>
    ContentMismatch,
    /// <summary>Strict mode: the images are allocated differently at <see cref="CompareResult.Offset"/>.</summary>
    StatusMismatch,
    /// <summary>Strict mode: the images differ in size.</summary>
    SizeMismatch,
}

/// <summary>The answer of a comparison: what was found and where (-1 when there is no offset to name).</summary>
internal readonly record struct CompareResult(CompareOutcome Outcome, long Offset);

/// <summary>
/// Compares the disks two images show, as qemu-img compare does, reading only what the extent maps cannot answer.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Both images' extent maps (backing chains included) are walked together; each step covers the range up to the
/// nearer end of the two current extents, within the common size.</item>
/// <item>A range that reads as zeros on both sides (zero clusters, holes, unallocated ranges) is skipped unread. A range
/// that is data on one side only is read on that side and checked for zeros. Data on both sides is read from both and
/// compared. Reads go through one 2 MiB buffer per side, so memory does not grow with the extents.</item>
/// <item>In strict mode each step first compares the two ranges' allocation status as qemu reports it (data, zero,
/// unallocated; whether the range maps to a file offset), and images of different sizes differ outright.</item>
/// <item>Otherwise, past the common size, the longer image must read as zeros: only its data extents are read.</item>
/// </list>
/// Offsets of mismatches are reported as qemu-img reports them: the start of the first 512-byte sector that differs.
/// </remarks>
internal sealed class ImageComparer
{
    /// <summary>qemu-img compares in sectors and names the first sector that differs.</summary>
    internal const int SectorSize = 512;

    /// <summary>qemu-img's IO_BUF_SIZE: the most read from one image at a time.</summary>
    internal const int BufferSize = 2 << 20;

    // qemu's block status flags (block.h), for strict mode's comparison of what each side reports.
    private const int StatusData = 0x01;
    private const int StatusZero = 0x02;
    private const int StatusOffsetValid = 0x04;
    private const int StatusAllocated = 0x10;

    private readonly BlockDevice _first;
    private readonly BlockDevice _second;
    private readonly string _firstName;
    private readonly string _secondName;
    private readonly long _firstSize;
    private readonly long _secondSize;
    private Action<long, long>? _progress;
    private long _total;

    /// <summary>Prepares a comparison of <paramref name="first"/> and <paramref name="second"/>, named in messages as given.</summary>
    /// <param name="first">The first image (its chain included).</param>
    /// <param name="firstName">The first image's name as the user gave it.</param>
    /// <param name="second">The second image.</param>
    /// <param name="secondName">The second image's name as the user gave it.</param>
    /// <param name="firstSize">The first image's size as qemu shows it (a raw file rounded up to whole sectors).</param>
    /// <param name="secondSize">The second image's size as qemu shows it.</param>
    public ImageComparer(BlockDevice first, string firstName, long firstSize, BlockDevice second, string secondName, long secondSize)
    {
        _first = first;
        _second = second;
        _firstName = firstName;
        _secondName = secondName;
        _firstSize = firstSize;
        _secondSize = secondSize;
    }

    /// <summary>Bytes read from both images so far: what the extent maps could not answer.</summary>
    public long BytesRead { get; private set; }

    /// <summary>Runs the comparison.</summary>
    /// <param name="strict">Images must also have the same size and allocation (qemu-img compare <c>-s</c>).</param>
    /// <param name="sizeMismatch">Called once the common part compared equal and the sizes differ, before the longer image's tail is checked.</param>
    /// <param name="progress">Called with the bytes covered so far and the longer image's size.</param>
    /// <exception cref="CompareFailure">An image's allocation or data could not be read.</exception>
    public CompareResult Run(bool strict, Action? sizeMismatch = null, Action<long, long>? progress = null)
    {
        if (strict && _firstSize != _secondSize)
        {
            return new(CompareOutcome.SizeMismatch, -1);
        }
        long common = Math.Min(_firstSize, _secondSize);
        long total = Math.Max(_firstSize, _secondSize);
        _progress = progress;
        _total = total;
        byte[] firstBuffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        byte[] secondBuffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            var firstCursor = new ExtentCursor(_first, _firstName, 0, _firstSize);
            var secondCursor = new ExtentCursor(_second, _secondName, 0, _secondSize);
            long position = 0;
            while (position < common)
            {
                var one = firstCursor.Current();
                var other = secondCursor.Current();
                long end = Math.Min(Math.Min(one.End, other.End), common);
                if (strict && Status(one) != Status(other))
                {
                    return new(CompareOutcome.StatusMismatch, position);
                }
                long mismatch = (one.IsData, other.IsData) switch
                {
                    (true, true) => FindDifference(position, end, firstBuffer, secondBuffer),
                    (true, false) => FindNonZero(_first, _firstName, position, end, firstBuffer),
                    (false, true) => FindNonZero(_second, _secondName, position, end, secondBuffer),
                    // Both read as zeros: known from the maps alone.
                    _ => -1,
                };
                if (mismatch >= 0)
                {
                    return new(CompareOutcome.ContentMismatch, SectorStart(mismatch));
                }
                position = end;
                firstCursor.Advance(position);
                secondCursor.Advance(position);
                progress?.Invoke(position, total);
            }

            if (_firstSize == _secondSize)
            {
                return new(CompareOutcome.Identical, -1);
            }
            sizeMismatch?.Invoke();
            var (longer, longerName) = _firstSize > _secondSize ? (_first, _firstName) : (_second, _secondName);
            var tail = new ExtentCursor(longer, longerName, common, total);
            while (position < total)
            {
                var extent = tail.Current();
                long end = Math.Min(extent.End, total);
                if (extent.IsData && FindNonZero(longer, longerName, position, end, firstBuffer) is >= 0 and var mismatch)
                {
                    return new(CompareOutcome.ContentMismatch, SectorStart(mismatch));
                }
                position = end;
                tail.Advance(position);
                progress?.Invoke(position, total);
            }
            return new(CompareOutcome.Identical, -1);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(firstBuffer);
            ArrayPool<byte>.Shared.Return(secondBuffer);
        }
    }

    /// <summary>
    /// The block status qemu's <c>bdrv_block_status_above</c> gives a range, without its end-of-file flag: data (allocated,
    /// at a file offset); a zero cluster (allocated) or a raw file's hole (allocated, at a file offset); unallocated
    /// through the whole chain (zero); or past the end of a shorter backing file, which qemu counts as allocated zeros.
    /// </summary>
    internal static int Status(Extent extent) => extent.State switch
    {
        // A qcow2 compressed cluster is data at no offset of the file; an unallocated qcow2 subcluster of an allocated
        // cluster (at the bottom of the chain) has one.
        BlockState.Data => StatusData | StatusAllocated | OffsetFlag(extent),
        BlockState.Zero => StatusZero | StatusAllocated | OffsetFlag(extent),
        _ => extent.Device.Backing is null ? StatusZero | OffsetFlag(extent) : StatusZero | StatusAllocated,
    };

    private static int OffsetFlag(Extent extent) => extent.HostOffset >= 0 ? StatusOffsetValid : 0;

    private static long SectorStart(long offset) => offset - offset % SectorSize;

    /// <summary>The first offset in <c>[start, end)</c> where the two images differ, or -1.</summary>
    private long FindDifference(long start, long end, byte[] firstBuffer, byte[] secondBuffer)
    {
        for (long offset = start; offset < end; offset += BufferSize)
        {
            int length = (int)Math.Min(BufferSize, end - offset);
            var one = Read(_first, _firstName, firstBuffer, offset, length);
            var other = Read(_second, _secondName, secondBuffer, offset, length);
            int same = one.CommonPrefixLength(other);
            if (same < length)
            {
                return offset + same;
            }
            Advanced(offset + length);
        }
        return -1;
    }

    /// <summary>The first offset in <c>[start, end)</c> where <paramref name="device"/> does not read as zero, or -1.</summary>
    private long FindNonZero(BlockDevice device, string name, long start, long end, byte[] buffer)
    {
        for (long offset = start; offset < end; offset += BufferSize)
        {
            int length = (int)Math.Min(BufferSize, end - offset);
            int index = Read(device, name, buffer, offset, length).IndexOfAnyExcept((byte)0);
            if (index >= 0)
            {
                return offset + index;
            }
            Advanced(offset + length);
        }
        return -1;
    }

    /// <summary>Reports progress inside a long data extent too, buffer by buffer, so a large copy of data shows it moving.</summary>
    private void Advanced(long position) => _progress?.Invoke(position, _total);

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/>; past the end of a raw file's bytes, zeros (qemu's sector rounding).</summary>
    private ReadOnlySpan<byte> Read(BlockDevice device, string name, byte[] buffer, long offset, int length)
    {
        int stored = (int)Math.Clamp(device.Size - offset, 0, length);
        try
        {
            if (stored > 0)
            {
                device.Read(buffer.AsMemory(0, stored), offset);
            }
        }
        catch (Exception e) when (e is QedException or IOException)
        {
            throw new CompareFailure(CompareFailure.ReadFailed, $"Error while reading offset {offset} of {name}: {Program.Describe(e)}", e);
        }
        buffer.AsSpan(stored, length - stored).Clear();
        BytesRead += stored;
        return buffer.AsSpan(0, length);
    }
}
