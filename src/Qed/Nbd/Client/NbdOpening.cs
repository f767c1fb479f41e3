using Qed.Formats;
using Qed.Image;

namespace Qed.Nbd.Client;

/// <summary>
/// An NBD export in the chain opener: always raw (qemu's nbd protocol driver with the raw format on top), never with a
/// backing file of its own. Nothing to complete: the connection is made when the opening is begun.
/// </summary>
internal sealed class NbdOpening : ImageOpening
{
    private readonly NbdBlockDevice _device;

    private NbdOpening(NbdBlockDevice device) => _device = device;

    /// <inheritdoc />
    public override IO.BlockDevice Device => _device;

    /// <summary>Connects to the export <paramref name="uri"/> names, refusing any format but raw.</summary>
    /// <exception cref="QedUnsupportedException">A format other than raw was asked for.</exception>
    /// <exception cref="QedException">The URI is invalid or the connection failed.</exception>
    public static async ValueTask<NbdOpening> OpenAsync(string uri, ImageFormat? format, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        if (format is not null && format != ImageFormats.Raw)
        {
            throw new QedUnsupportedException($"an NBD export opens only as raw: formats are not layered over NBD (serve the {format.Title} image itself instead)");
        }
        return new NbdOpening(await NbdBlockDevice.OpenAsync(uri, options.ReadOnly, useAsync, cancellationToken).ConfigureAwait(false));
    }
}
