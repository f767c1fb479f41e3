namespace Qed;

/// <summary>A request that changes the image (a write, write-zeroes, discard, resize or repair) reached an image open read-only.</summary>
public sealed class QedReadOnlyException : QedException
{
    /// <summary>Creates the exception with a one-line message naming the image.</summary>
    public QedReadOnlyException(string message) : base(message) { }
}
