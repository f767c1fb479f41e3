using Qed.IO;

namespace Qed.Formats;

/// <summary>
/// An image between the stages of an open (<see cref="ImageFormat.BeginOpenAsync"/>): its file is read and validated,
/// nothing is written yet, and its backing device, if it names one, is not attached yet.
/// </summary>
/// <remarks>
/// The chain opener calls <see cref="AttachBacking"/> (when <see cref="BackingPath"/> is set and the chain is wanted),
/// then <see cref="CompleteAsync"/> once every file of the chain is open. If anything fails before that, the opening is
/// dropped without closing the device (closing could write): it owns no resource but its file, which its opener disposes.
/// </remarks>
internal abstract class ImageOpening
{
    /// <summary>The device being opened; not to be used before <see cref="CompleteAsync"/> returned.</summary>
    public abstract BlockDevice Device { get; }

    /// <summary>The backing file's path, resolved against the image's directory, or null when the image names none.</summary>
    public virtual string? BackingPath => null;

    /// <summary>The backing file's format name as the image records it, or null to probe it.</summary>
    public virtual string? BackingFormat => null;

    /// <summary>Makes <paramref name="backing"/> the device that unallocated ranges fall through to; the image owns it from now on.</summary>
    public virtual void AttachBacking(BlockDevice backing) =>
        throw new InvalidOperationException("This image names no backing file.");

    /// <summary>Does what the format writes at open (for QED: clearing auto-clear bits, repairing after a crash), once the chain is attached.</summary>
    public virtual ValueTask CompleteAsync(bool useAsync, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}
