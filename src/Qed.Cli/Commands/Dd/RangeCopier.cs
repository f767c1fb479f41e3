using System.Buffers;
using Qed.Extents;
using Qed.IO;

namespace Qed.Cli.Commands.Dd;

/// <summary>
/// Copies a range of a source's disk to the start of a target that reads as zeros, writing only what is not zero.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>The source's extent map (backing chain included) is walked over the range; extents that read as zeros are
/// skipped unread, however long.</item>
/// <item>Data extents are read in pieces of at most <see cref="BufferSize"/>, each ending on a granule boundary of the
/// target, so a granule is never split between two pieces.</item>
/// <item>Each piece is tested in granules aligned to the target (its cluster size, so a QED target allocates only whole
/// clusters that hold data), and only runs of granules holding a non-zero byte are written.</item>
/// </list>
/// Past the source's stored end (a raw file shorter than its last sector) the disk reads as zeros: nothing to write.
/// </remarks>
internal sealed class RangeCopier
{
    /// <summary>The largest piece read at once.</summary>
    internal const int BufferSize = 2 << 20;

    private readonly BlockDevice _source;
    private readonly BlockDevice _target;
    private readonly int _granule;

    /// <summary>Prepares a copy from <paramref name="source"/> to <paramref name="target"/>, testing for zeros in <paramref name="granule"/>-byte units (a power of two, at most <see cref="BufferSize"/>).</summary>
    public RangeCopier(BlockDevice source, BlockDevice target, int granule)
    {
        _source = source;
        _target = target;
        _granule = Math.Clamp(granule, 1, BufferSize);
    }

    /// <summary>Bytes read from the source so far.</summary>
    public long BytesRead { get; private set; }

    /// <summary>Bytes written to the target so far.</summary>
    public long BytesWritten { get; private set; }

    /// <summary>Copies <c>[start, start+length)</c> of the source to <c>[0, length)</c> of the target.</summary>
    /// <exception cref="CliException">A read or a write failed; qemu-img dd's wording.</exception>
    public void Copy(long start, long length)
    {
        long stored = Math.Clamp(_source.Size - start, 0, length);
        if (stored == 0)
        {
            return;
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            IEnumerable<Extent> extents = ExtentMap.Enumerate(_source, start, stored);
            using var walk = extents.GetEnumerator();
            while (Next(walk) is { } extent)
            {
                if (!extent.IsData)
                {
                    continue;
                }
                for (long offset = extent.Offset; offset < extent.End;)
                {
                    // Pieces end on the target's granule boundaries, so no granule is tested in two halves.
                    long targetOffset = offset - start;
                    // The granule is at most BufferSize, so the aligned end still lies past the offset.
                    long pieceEnd = Math.Min(extent.End, start + AlignDown(targetOffset + BufferSize, _granule));
                    int pieceLength = (int)(pieceEnd - offset);
                    Read(buffer.AsMemory(0, pieceLength), offset);
                    WriteNonZero(buffer.AsMemory(0, pieceLength), targetOffset);
                    offset = pieceEnd;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static long AlignDown(long value, long alignment) => value - value % alignment;

    private static Extent? Next(IEnumerator<Extent> walk)
    {
        try
        {
            return walk.MoveNext() ? walk.Current : null;
        }
        catch (Exception e) when (e is QedException or IOException)
        {
            throw new CliException($"error while reading from input image file: {Program.Describe(e)}", e);
        }
    }

    private void Read(Memory<byte> destination, long offset)
    {
        try
        {
            _source.Read(destination, offset);
        }
        catch (Exception e) when (e is QedException or IOException)
        {
            throw new CliException($"error while reading from input image file: {Program.Describe(e)}", e);
        }
        BytesRead += destination.Length;
    }

    /// <summary>Writes the runs of granules of <paramref name="data"/> (at <paramref name="targetOffset"/>) that hold a non-zero byte.</summary>
    private void WriteNonZero(ReadOnlyMemory<byte> data, long targetOffset)
    {
        int runStart = -1;
        int position = 0;
        while (position < data.Length)
        {
            // The granule that holds targetOffset + position, cut to the piece.
            int granuleEnd = (int)Math.Min(data.Length, position + (_granule - (targetOffset + position) % _granule));
            bool zero = !data.Span[position..granuleEnd].ContainsAnyExcept((byte)0);
            if (!zero && runStart < 0)
            {
                runStart = position;
            }
            else if (zero && runStart >= 0)
            {
                Write(data[runStart..position], targetOffset + runStart);
                runStart = -1;
            }
            position = granuleEnd;
        }
        if (runStart >= 0)
        {
            Write(data[runStart..], targetOffset + runStart);
        }
    }

    private void Write(ReadOnlyMemory<byte> data, long offset)
    {
        try
        {
            _target.Write(data, offset);
        }
        catch (Exception e) when (e is QedException or IOException)
        {
            throw new CliException($"error while writing to output image file: {Program.Describe(e)}", e);
        }
        BytesWritten += data.Length;
    }
}
