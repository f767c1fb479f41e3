namespace Qed.Nbd.Server;

/// <summary>The peer broke the protocol in a way that leaves the stream unparseable: the connection is dropped.</summary>
internal sealed class NbdProtocolException : Exception
{
    public NbdProtocolException(string message)
        : base(message)
    {
    }
}
