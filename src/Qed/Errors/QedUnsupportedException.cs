namespace Qed;

/// <summary>The image uses a feature this implementation does not support (unknown incompatible feature bits, an unknown backing format).</summary>
public sealed class QedUnsupportedException : QedException
{
    /// <summary>Creates the exception with a one-line message naming the feature.</summary>
    public QedUnsupportedException(string message) : base(message) { }
}
