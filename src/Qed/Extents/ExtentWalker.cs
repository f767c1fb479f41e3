using Qed.IO;

namespace Qed.Extents;

/// <summary>Walks the extents of a range of a device's disk in order, one merged extent per call (see <see cref="ExtentMap"/>).</summary>
internal sealed class ExtentWalker
{
    private readonly BlockDevice _device;
    private readonly long _end;
    private long _position;
    /// <summary>An answer read while merging that did not continue the extent before it: the start of the next extent.</summary>
    private Extent? _pending;

    /// <summary>Walks <c>[start, end)</c> of <paramref name="device"/>'s disk; the range must lie inside the device.</summary>
    public ExtentWalker(BlockDevice device, long start, long end)
    {
        _device = device;
        _position = start;
        _end = end;
        Probing = start;
    }

    /// <summary>The offset of the last status request: after a failure, where the map could not be read.</summary>
    public long Probing { get; private set; }

    /// <summary>The next merged extent, or null at the end of the range.</summary>
    public async ValueTask<Extent?> NextAsync(bool useAsync, CancellationToken cancellationToken)
    {
        if (_position >= _end)
        {
            return null;
        }
        var extent = _pending ?? await AnswerAsync(_position, useAsync, cancellationToken).ConfigureAwait(false);
        _pending = null;
        while (extent.End < _end)
        {
            var next = await AnswerAsync(extent.End, useAsync, cancellationToken).ConfigureAwait(false);
            if (!extent.Continues(next))
            {
                _pending = next;
                break;
            }
            extent = extent with { Length = extent.Length + next.Length };
        }
        _position = extent.End;
        return extent;
    }

    /// <summary>The answer of the first layer that has one for <paramref name="offset"/>, as long as that layer's answer runs (to the end of the range at most).</summary>
    private async ValueTask<Extent> AnswerAsync(long offset, bool useAsync, CancellationToken cancellationToken)
    {
        Probing = offset;
        cancellationToken.ThrowIfCancellationRequested();
        var device = _device;
        long length = _end - offset;
        for (int depth = 0; ; depth++)
        {
            var status = await device.GetStatusCoreAsync(offset, length, useAsync, cancellationToken).ConfigureAwait(false);
            if (status.Length <= 0 || status.Length > length)
            {
                throw new InvalidOperationException($"'{device.FileName}' answered a status request of {length} bytes at {offset} with {status.Length} bytes.");
            }
            if (status.State != BlockState.Unallocated)
            {
                return new Extent(offset, status.Length, status.State, depth, status.HostOffset, device);
            }
            var backing = device.Backing;
            long readable = FallThrough.Readable(backing, offset, status.Length);
            if (readable == 0)
            {
                // Keep the layer's host offset: qemu-img map shows it for the unallocated subclusters of an allocated qcow2 cluster.
                return new Extent(offset, status.Length, BlockState.Unallocated, depth, status.HostOffset, device);
            }
            device = backing!;
            length = readable;
        }
    }
}
