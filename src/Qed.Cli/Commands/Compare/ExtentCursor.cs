using Qed.Extents;
using Qed.IO;

namespace Qed.Cli.Commands.Compare;

/// <summary>
/// Walks the merged extents of one image of a comparison in order, up to the size qemu shows for it: a raw file whose
/// length is not a whole number of sectors is a disk rounded up to the next sector, and the bytes past the file's end
/// read as zeros there (qemu-img map shows them as a zero range at that file offset).
/// </summary>
internal sealed class ExtentCursor
{
    private readonly IEnumerator<Extent> _extents;
    private readonly BlockDevice _device;
    private readonly string _name;
    private Extent? _current;

    /// <summary>Starts a walk of <paramref name="device"/> (shown as <paramref name="name"/> in messages) from <paramref name="start"/> to <paramref name="size"/>.</summary>
    public ExtentCursor(BlockDevice device, string name, long start, long size)
    {
        _device = device;
        _name = name;
        Size = size;
        long stored = Math.Min(device.Size, size);
        _extents = start < stored
            ? ExtentMap.Enumerate(device, start, stored - start).GetEnumerator()
            : Enumerable.Empty<Extent>().GetEnumerator();
        Position = start;
    }

    /// <summary>The end of the walk (the image's size as qemu shows it).</summary>
    public long Size { get; }

    /// <summary>Where the current extent is asked from.</summary>
    public long Position { get; private set; }

    /// <summary>
    /// The extent that covers <see cref="Position"/>; past the stored end of a raw file, a zero extent at the same file
    /// offset (a raw hole's status) up to <see cref="Size"/>.
    /// </summary>
    /// <exception cref="CompareFailure">The allocation status could not be read (qemu-img's exit status 3).</exception>
    public Extent Current()
    {
        if (_current is { } extent && extent.End > Position)
        {
            return extent;
        }
        // Asks the map for the next extent only when the walk has left the current one.
        _current = Next();
        return _current.Value;
    }

    /// <summary>Moves the walk to <paramref name="position"/>, which lies inside or at the end of the current extent.</summary>
    public void Advance(long position) => Position = position;

    private Extent Next()
    {
        if (Position < _device.Size)
        {
            try
            {
                if (_extents.MoveNext())
                {
                    return _extents.Current;
                }
            }
            catch (Exception e) when (e is QedException or IOException or InvalidOperationException)
            {
                throw new CompareFailure(CompareFailure.StatusFailed, $"Sector allocation test failed for {_name}: {Program.Describe(e)}", e);
            }
            throw new InvalidOperationException($"The extent map of '{_name}' ended at {Position}, before its end at {_device.Size}.");
        }
        return new Extent(Position, Size - Position, BlockState.Zero, 0, Position, _device);
    }
}
