using System.Runtime.CompilerServices;
using Qed.IO;

namespace Qed.Extents;

/// <summary>
/// The allocation map of the disk a device shows, backing chain included: which ranges hold data, which read as zeros,
/// which layer answers for each and where in its file. Feeds sparse copies, and later map, compare and NBD block status.
/// </summary>
/// <remarks>
/// 1. Each layer is asked for the status of the range as it alone sees it (<see cref="BlockDevice.GetStatus"/>).
/// 2. Data and zero ranges are answered by that layer. Unallocated ranges fall through to the backing device, clamped
///    to its size (<see cref="FallThrough"/>); what lies past its end, or below the last layer, is unallocated.
/// 3. Neighbouring answers of the same kind (<see cref="Extent.Continues"/>) are merged into one extent, so the result
///    does not depend on where a layer splits its answers (QED stops at L2 table boundaries, for example).
/// The walk holds no lock and reads only metadata; a map of a device that is written meanwhile is a snapshot of no
/// single moment.
/// </remarks>
public static class ExtentMap
{
    /// <summary>The extent that starts at <paramref name="offset"/>, merged as far as it goes but at most <paramref name="length"/> bytes long.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is empty or lies outside the device.</exception>
    public static Extent GetExtent(BlockDevice device, long offset, long length)
    {
        CheckRange(device, offset, length, allowEmpty: false);
        return new ExtentWalker(device, offset, offset + length).NextAsync(useAsync: false, CancellationToken.None).GetAwaiter().GetResult()!.Value;
    }

    /// <inheritdoc cref="GetExtent"/>
    public static async ValueTask<Extent> GetExtentAsync(BlockDevice device, long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(device, offset, length, allowEmpty: false);
        return (await new ExtentWalker(device, offset, offset + length).NextAsync(useAsync: true, cancellationToken).ConfigureAwait(false))!.Value;
    }

    /// <summary>The extents covering <c>[offset, offset+length)</c> in order (the whole device by default), each merged as far as it goes.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range lies outside the device.</exception>
    public static IEnumerable<Extent> Enumerate(BlockDevice device, long offset = 0, long length = -1)
    {
        length = length < 0 ? device.Size - offset : length;
        CheckRange(device, offset, length, allowEmpty: true);
        return EnumerateCore(new ExtentWalker(device, offset, offset + length));
    }

    /// <inheritdoc cref="Enumerate"/>
    public static IAsyncEnumerable<Extent> EnumerateAsync(BlockDevice device, long offset = 0, long length = -1, CancellationToken cancellationToken = default)
    {
        length = length < 0 ? device.Size - offset : length;
        CheckRange(device, offset, length, allowEmpty: true);
        return EnumerateCoreAsync(new ExtentWalker(device, offset, offset + length), cancellationToken);
    }

    private static IEnumerable<Extent> EnumerateCore(ExtentWalker walker)
    {
        while (walker.NextAsync(useAsync: false, CancellationToken.None).GetAwaiter().GetResult() is { } extent)
        {
            yield return extent;
        }
    }

    private static async IAsyncEnumerable<Extent> EnumerateCoreAsync(ExtentWalker walker, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        while (await walker.NextAsync(useAsync: true, cancellationToken).ConfigureAwait(false) is { } extent)
        {
            yield return extent;
        }
    }

    private static void CheckRange(BlockDevice device, long offset, long length, bool allowEmpty)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (offset < 0 || length < (allowEmpty ? 0 : 1) || offset > device.Size - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"The range of {length} bytes at offset {offset} is empty or lies outside the {device.Size}-byte device.");
        }
    }
}
