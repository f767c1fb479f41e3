using Qed.Format;

namespace Qed.Image;

// Emptying an overlay after a commit: every cluster unallocated again, the file back to its header and L1 table.
public sealed partial class QedImage
{
    /// <summary>
    /// Makes every cluster of the image unallocated, so that the whole disk reads through to the backing file, and
    /// truncates the file after its metadata so that no cluster leaks. No other request may use the image meanwhile.
    /// </summary>
    /// <remarks>
    /// The caller must first have made the backing chain read, everywhere this image has clusters, what this image reads
    /// there, and have flushed it: that is what makes every intermediate state below read the same.
    /// <list type="number">
    /// <item>Stop allocations (every stripe) and flush this file, so nothing written before is still in flight.</item>
    /// <item>Write the whole L1 table as zeros in one write, then flush. A crash or a torn write leaves some entries
    /// cleared and others not: a cleared entry reads through to the backing file, which holds the same bytes; an entry
    /// not yet cleared still points at its L2 table, which is intact. Either way the disk reads the same, and the L2
    /// tables and clusters no entry reaches any more are only leaks.</item>
    /// <item>Clear the L1 table in memory and drop the cached L2 slices, only now that the disk has changed.</item>
    /// <item>Truncate the file after the header and the L1 table and flush, so the leaks of step 2 are gone; the
    /// allocation pointer moves back there. A crash before this step leaves only leaks, which <c>check -r leaks</c>
    /// (or the next emptying) removes.</item>
    /// </list>
    /// Clusters between the header and the L1 table (QEMU never puts any there) would stay as leaks.
    /// </remarks>
    /// <exception cref="QedReadOnlyException">The image is open read-only.</exception>
    internal void MakeEmpty() => MakeEmptyAsync(useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="MakeEmpty"/>
    internal ValueTask MakeEmptyAsync(CancellationToken cancellationToken = default) => MakeEmptyAsync(useAsync: true, cancellationToken);

    private async ValueTask MakeEmptyAsync(bool useAsync, CancellationToken cancellationToken)
    {
        if (IsReadOnly)
        {
            throw new QedReadOnlyException($"'{FileName}' is open read-only: emptying it needs write access");
        }
        EnterRequest();
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Step 1.
            await _space.EnterAllAsync(useAsync, cancellationToken).ConfigureAwait(false);
            try
            {
                await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);

                // Step 2.
                long l1Offset = (long)Header.L1TableOffset;
                byte[] zeros = new byte[_geometry.TableBytes];
                await _file.WriteAsync(zeros, l1Offset, useAsync, cancellationToken).ConfigureAwait(false);
                await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);

                // Step 3.
                Array.Clear(_map.L1);
                _map.Cache.Clear();

                // Step 4.
                long keep = Math.Max((long)Header.HeaderSize * Header.ClusterSize, l1Offset + _geometry.TableBytes);
                if (_file.GetLength() > keep)
                {
                    _file.SetLength(keep);
                    await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
                    _space.TruncatedTo(OffsetRules.FileSize(keep, _geometry));
                }
            }
            finally
            {
                _space.ExitAll();
            }
        }
        finally
        {
            ExitRequest();
        }
    }
}
