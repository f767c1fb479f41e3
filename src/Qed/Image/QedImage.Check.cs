using Qed.Check;
using Qed.Format;

namespace Qed.Image;

// Check and repair orchestration: stop allocations, run the checker over the live metadata, then bring the cache,
// the allocation pointer and the need-check bit in line with what the repair did.
public sealed partial class QedImage
{
    /// <summary>Checks the image's metadata and, with <paramref name="mode"/>, repairs what can be repaired safely (QED-FORMAT.md §8). No other request may use the image meanwhile.</summary>
    public CheckResult Check(RepairMode mode = RepairMode.None) =>
        CheckCoreAsync(mode, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="Check"/>
    public ValueTask<CheckResult> CheckAsync(RepairMode mode = RepairMode.None, CancellationToken cancellationToken = default) =>
        CheckCoreAsync(mode, useAsync: true, cancellationToken);

    private async ValueTask<CheckResult> CheckCoreAsync(RepairMode mode, bool useAsync, CancellationToken cancellationToken) =>
        (await RunCheckAsync(mode, useAsync, cancellationToken).ConfigureAwait(false)).Result;

    /// <summary>Runs the check; also returns the first I/O error it counted in <see cref="CheckResult.CheckErrors"/>.</summary>
    private async ValueTask<(CheckResult Result, IOException? FirstFailure)> RunCheckAsync(RepairMode mode, bool useAsync, CancellationToken cancellationToken)
    {
        if (mode != RepairMode.None && IsReadOnly)
        {
            throw new QedException($"'{FileName}' is open read-only: a repair needs write access");
        }
        // The check needs the metadata still: no allocation may run while it does.
        await _space.EnterAllAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            var checker = new QedChecker(_file, Header, _geometry, _map.L1, _space.End);
            var result = await checker.CheckAsync(mode, useAsync, cancellationToken).ConfigureAwait(false);
            if (checker.TablesChanged)
            {
                _map.Cache.Clear();
            }
            if (checker.TruncatedTo >= 0)
            {
                _space.TruncatedTo(checker.TruncatedTo);
            }
            if (mode != RepairMode.None && Header.NeedsCheck && result.Corruptions == 0 && result.CheckErrors == 0)
            {
                // Unlike QEMU (§5.7), the bit is cleared only when nothing unfixable remains.
                await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
                await _headerState.UpdateAsync(static h => h with { Features = h.Features & ~QedFeatures.NeedCheck }, useAsync, cancellationToken).ConfigureAwait(false);
            }
            return (result, checker.FirstFailure);
        }
        finally
        {
            _space.ExitAll();
        }
    }
}
