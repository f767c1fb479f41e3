using System.Runtime.CompilerServices;
using Qed.IO;

namespace Qed.Extents;

/// <summary>
/// The one rule for what a layer does not hold: an unallocated range falls through to the backing device, and reads
/// as zeros where there is none or past its end (a backing file may be shorter than the image over it).
/// </summary>
internal static class FallThrough
{
    /// <summary>How many bytes of <c>[offset, offset+length)</c> the backing device holds (from the start); the rest reads as zeros.</summary>
    public static long Readable(BlockDevice? backing, long offset, long length) =>
        backing is null ? 0 : Math.Clamp(backing.Size - offset, 0, length);

    /// <summary>Fills <paramref name="destination"/> with what the disk below a layer shows at <paramref name="offset"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask ReadAsync(BlockDevice? backing, Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        int readable = (int)Readable(backing, offset, destination.Length);
        if (readable > 0)
        {
            await backing!.ReadCoreAsync(destination[..readable], offset, useAsync, cancellationToken).ConfigureAwait(false);
        }
        destination.Span[readable..].Clear();
    }
}
